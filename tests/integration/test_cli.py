"""The `queue` and `migrate` commands as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt

from tests.helpers import insert_task


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "booklogr_tasks.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_queue_shows_counts_and_the_oldest_of_each_state(env: dict[str, str], conn: Any) -> None:
    waiting = [insert_task(conn, "csv_export", {"owner_id": 1}, 1) for _ in range(3)]
    failed = insert_task(conn, "goodreads_import", {"owner_id": 2}, 2)
    conn.execute(
        "UPDATE tasks SET status = 'failure', error = 'the file is not a Goodreads export', "
        "worker = 'w', attempts = 1 WHERE id = %s",
        (failed,),
    )
    out = _run(["queue"], env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["type", "status", "count", "oldest", "created"]
    assert any(line.split()[:3] == ["csv_export", "fresh", "3"] for line in lines)
    assert any(line.split()[:3] == ["goodreads_import", "failure", "1"] for line in lines)
    assert "oldest waiting:" in out.stdout and "oldest failed:" in out.stdout
    assert "the file is not a Goodreads export" in out.stdout
    assert str(waiting[0]) in out.stdout


def test_queue_of_an_empty_database(env: dict[str, str]) -> None:
    out = _run(["queue"], env)
    assert (out.returncode, out.stdout) == (0, "no tasks\n")


def test_migrate_reports_what_it_applied_then_nothing(
    env: dict[str, str], empty_db_url: str
) -> None:
    first = _run(["migrate"], {**env, "DATABASE_URL": empty_db_url})
    assert first.returncode == 0 and first.stdout.startswith("applied: 0001_tasks.sql")
    second = _run(["migrate"], {**env, "DATABASE_URL": empty_db_url})
    assert (second.returncode, second.stdout) == (0, "schema is up to date\n")


def test_bad_configuration_is_named(env: dict[str, str]) -> None:
    out = _run(["queue"], {**env, "TASK_LEASE_SECONDS": "soon"})
    assert out.returncode == 2
    assert "TASK_LEASE_SECONDS" in out.stderr and "Traceback" not in out.stderr


def test_migrate_waits_for_the_database_then_says_it_never_answered(
    env: dict[str, str],
) -> None:
    # Nothing listens on the port of a socket that was just closed.
    from tests.integration.http_calls import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/booklogr"
    out = _run(["migrate", "--wait", "1.5"], {**env, "DATABASE_URL": url})
    assert out.returncode == 2
    assert "waiting for the database" in out.stderr
    assert "did not answer within 1.5 s" in out.stderr and "Traceback" not in out.stderr


def test_migrate_with_wait_migrates_a_database_that_answers(
    env: dict[str, str], empty_db_url: str
) -> None:
    out = _run(["migrate", "--wait", "30"], {**env, "DATABASE_URL": empty_db_url})
    assert out.returncode == 0 and out.stdout.startswith("applied: 0001_tasks.sql")
    assert "waiting" not in out.stderr


def test_token_is_signed_with_the_secret_file_and_looks_like_booklogrs(tmp_path: Path) -> None:
    secret_file = tmp_path / "auth-secret"
    secret_file.write_text("a-local-secret-of-sufficient-length-0123456789\n")
    env = {k: v for k, v in os.environ.items() if k != "AUTH_SECRET_KEY"}
    out = _run(["token", "--user", "7", "--secret-file", str(secret_file)], env)
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(
        out.stdout.strip(), "a-local-secret-of-sufficient-length-0123456789", ["HS256"]
    )
    assert claims["id"] == 7 and claims["type"] == "access" and claims["jti"]
    assert claims["exp"] - claims["iat"] == 5 * 24 * 3600

    missing = _run(["token", "--secret-file", str(tmp_path / "nothing")], env)
    assert missing.returncode == 2 and "--secret-file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_api_says_its_database_as_a_log_event_and_refuses_a_port_in_use(
    env: dict[str, str],
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = _run(["api", "--port", str(port)], env)
    assert out.returncode == 2
    # A server's output is JSON lines: which database it uses is its first event.
    first = json.loads(out.stdout.splitlines()[0])
    assert first["message"].startswith("database: ") and "(from DATABASE_URL)" in first["message"]
    (refusal,) = out.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in refusal and "--port" in refusal
