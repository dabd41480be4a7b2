"""`booklogr-tasks dev` as a real process: serves exports, stops on one signal, leaves nothing.

Every process a test starts is tracked (dev, its children, an embedded PostgreSQL) and killed in
`finally`, so a failing test leaves nothing running either.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from booklogr_tasks.devtools.demo import LIBRARY
from booklogr_tasks.devtools.dev import dev_export_folder

from tests.helpers import service, wait_until
from tests.integration.http_calls import (
    CSV_HEADER,
    alive,
    descendants,
    export_csv,
    free_port,
    kill_all,
    token_for,
    wait_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

READY = "Press Ctrl-C to stop."


def stop_with(dev_proc: subprocess.Popen[bytes], signum: int) -> int:
    dev_proc.send_signal(signum)
    return dev_proc.wait(60)


def test_dev_with_database_url_runs_the_demo_and_stops_on_one_sigint(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spawned: list[psutil.Process] = []
    # No --port: dev takes $PORT.
    dev_env = {**env, "PORT": str(port)}
    try:
        with service(["dev", "--demo"], dev_env, tmp_path / "dev.log", cwd=tmp_path) as dev:
            wait_healthy(base, dev)
            spawned += descendants(dev.pid)
            assert len(spawned) >= 2, "expected the API and a listener as child processes"
            wait_until(lambda: READY in dev.log(), what="the banner")
            log = dev.log()
            assert f"demo: added {len(LIBRARY)} books for user 1" in log
            assert "the demo library you just got" in log

            token = re.search(r"^TOKEN=(\S+)$", log, re.MULTILINE)
            assert token, log
            rows = list(csv.DictReader(io.StringIO(export_csv(base, token.group(1)))))
            assert ",".join(list(rows[0])[:9]) == CSV_HEADER
            assert len(rows) == len(LIBRARY)
            assert {row["reading_status"] for row in rows} == {
                "Read", "Currently reading", "To be read", "Did not finish"
            }  # fmt: skip
            assert {row["title"] for row in rows} == {book.title for book in LIBRARY}
            assert any(row["rating"] for row in rows) and any(row["notes"] != "[]" for row in rows)

            walkthrough = log.split("paste into a shell):\n", 1)[1].split(READY, 1)[0]
            if shutil.which("curl"):
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", walkthrough],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                downloaded = (tmp_path / "booklogr-export.csv").read_text(encoding="utf-8")
                assert downloaded.startswith(CSV_HEADER)

            assert stop_with(dev.proc, signal.SIGINT) == 0
            wait_until(lambda: not alive(spawned), what="the API and listener to exit")
            assert "exited with code" not in dev.log()
    finally:
        kill_all(spawned)


def test_dev_keeps_each_databases_exports_in_a_folder_of_its_own(
    db_url: str, empty_db_url: str, tmp_path: Path
) -> None:
    home = tmp_path / ".booklogr-tasks"
    mine = dev_export_folder(home, db_url)
    assert mine == dev_export_folder(home, db_url), "the same database, the same folder"
    assert mine.parent == (home / "exports").resolve()
    # Another database counts its ids from 1 too: its files must not land beside these.
    assert dev_export_folder(home, empty_db_url) != mine


# --- the embedded PostgreSQL ---------------------------------------------------------------


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL servers running on `data_dir` (their backends are not counted)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(data_dir) in cmdline and "-D" in cmdline:
            found.append(proc)
    return alive(found)


@pytest.fixture
def embedded_home(tmp_path: Path) -> Iterator[Path]:
    """A folder for dev to run in; whatever server is left on its data folder is killed."""
    home = tmp_path / "home"
    home.mkdir()
    yield home
    for proc in postmasters((home / ".booklogr-tasks" / "pgdata").resolve()):
        proc.send_signal(signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()


def count_marker_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM books WHERE title = 'survives restarts'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_dev_embedded_keeps_its_data_and_takes_over_an_orphaned_server(
    embedded_home: Path, tmp_path: Path
) -> None:
    data_dir = (embedded_home / ".booklogr-tasks" / "pgdata").resolve()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    unset = {"DATABASE_URL", "TEST_DATABASE_URL", "AUTH_SECRET_KEY", "SINGLE_USER_MODE"}
    dev_env = {k: v for k, v in os.environ.items() if k not in unset}
    dev_env.pop("EXPORT_FOLDER", None)
    dev_env |= {
        "SHUTDOWN_GRACE_SECONDS": "5",
        "TASK_SWEEP_SECONDS": "0.5",
    }
    args = ["dev", "--port", str(port)]
    spawned: list[psutil.Process] = []
    try:
        # 1. A first run creates the server, a secret and the data; one SIGINT stops it all.
        with service(args, dev_env, tmp_path / "dev1.log", cwd=embedded_home) as dev:
            wait_healthy(base, dev)
            spawned += descendants(dev.pid)
            found = re.search(r"^database:\s+(postgresql://\S+)", dev.log(), re.MULTILINE)
            assert found, dev.log()
            url = found.group(1)
            assert str(data_dir) in url
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO books (title, owner_id) VALUES ('survives restarts', 7)")
            secret = (embedded_home / ".booklogr-tasks" / "auth-secret").read_text().strip()
            assert "survives restarts" in export_csv(base, token_for(secret, 7))
            # Exports live in the data folder: deleting it deletes everything of this database.
            exports = (embedded_home / ".booklogr-tasks" / "exports").resolve()
            found_exports = re.search(
                rf"^exports:\s+({re.escape(str(exports))}/[0-9a-f]+-\d+)$", dev.log(), re.MULTILINE
            )
            assert found_exports, dev.log()
            assert Path(found_exports.group(1)) == dev_export_folder(exports.parent, url)
            assert [p.name for p in exports.rglob("*.csv")], "the export is not in the data folder"
            # The printed token command works from any folder.
            command = re.search(r"^  TOKEN=\$\((.+)\)$", dev.log(), re.MULTILINE)
            assert command, dev.log()
            minted = subprocess.run(
                ["bash", "-c", command.group(1)],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.strip()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO books (title, owner_id) VALUES ('user one', 1)")
            assert "user one" in export_csv(base, minted)
            assert len(postmasters(data_dir)) == 1
            assert stop_with(dev.proc, signal.SIGINT) == 0
        wait_until(lambda: not alive(spawned), what="dev's children to exit")
        assert postmasters(data_dir) == []

        # 2. A second run finds the same data; then dev dies without a chance to clean up.
        with service(args, dev_env, tmp_path / "dev2.log", cwd=embedded_home) as dev:
            wait_healthy(base, dev)
            children = descendants(dev.pid)
            spawned += children
            assert count_marker_rows(url) == 1
            dev.proc.kill()
            dev.proc.wait(10)
        # The children follow their parent; the server is orphaned, still holding the data.
        wait_until(lambda: not alive(children), what="the children of a killed dev to exit")
        orphans = postmasters(data_dir)
        assert len(orphans) == 1

        # 3. The next run takes the orphan over (no second server) and stops it at the end.
        with service(args, dev_env, tmp_path / "dev3.log", cwd=embedded_home) as dev:
            wait_healthy(base, dev)
            spawned += descendants(dev.pid)
            assert "reusing the embedded PostgreSQL" in dev.log()
            assert [p.pid for p in postmasters(data_dir)] == [orphans[0].pid]
            assert count_marker_rows(url) == 1
            assert stop_with(dev.proc, signal.SIGTERM) == 0
        wait_until(lambda: not alive(spawned), what="dev's children to exit")
        assert postmasters(data_dir) == []
    finally:
        kill_all(spawned)


def test_commands_find_make_runs_database_and_a_second_run_is_refused(
    embedded_home: Path, tmp_path: Path
) -> None:
    data_dir = (embedded_home / ".booklogr-tasks" / "pgdata").resolve()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    unset = {"DATABASE_URL", "TEST_DATABASE_URL", "AUTH_SECRET_KEY", "SINGLE_USER_MODE", "PORT"}
    dev_env = {k: v for k, v in os.environ.items() if k not in unset}
    dev_env.pop("EXPORT_FOLDER", None)
    dev_env["SHUTDOWN_GRACE_SECONDS"] = "5"
    spawned: list[psutil.Process] = []

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "booklogr_tasks.cli", *args],
            cwd=cwd, env=dev_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    try:
        with service(
            ["dev", "--port", str(port)], dev_env, tmp_path / "dev.log", cwd=embedded_home
        ) as dev:
            wait_healthy(base, dev)
            spawned += descendants(dev.pid)
            wait_until(lambda: READY in dev.log(), what="the banner")

            # Anywhere in the folder, without DATABASE_URL: make run's database, said first.
            below = embedded_home / "somewhere" / "below"
            below.mkdir(parents=True)
            queue = run(["queue"], below)
            assert queue.returncode == 0, queue.stderr
            first = queue.stderr.splitlines()[0]
            assert first.startswith(f"database: make run's embedded PostgreSQL in {data_dir}")
            assert queue.stdout == "no tasks\n"

            # The same folder, another port: refused, naming the running copy, before anything.
            again = run(["dev", "--port", str(free_port())], embedded_home)
            assert again.returncode != 0
            assert again.stdout == ""
            (refusal,) = again.stderr.splitlines()
            assert f"already running from this folder (pid {dev.pid}, {base})" in refusal
            assert "make run PORT=" in refusal

            # Another folder, the same port: refused before a banner, naming the port's holder.
            elsewhere = tmp_path / "elsewhere"
            elsewhere.mkdir()
            other = run(["dev", "--port", str(port)], elsewhere)
            assert other.returncode != 0
            assert other.stdout == ""
            (refusal,) = other.stderr.splitlines()
            assert f"booklogr-tasks is already running on {base}" in refusal
            assert f"make run PORT={port + 1}" in refusal
            assert not (elsewhere / ".booklogr-tasks" / "pgdata").exists()

            assert dev.log().count("booklogr-tasks is running:") == 1
            assert stop_with(dev.proc, signal.SIGINT) == 0
        wait_until(lambda: not alive(spawned), what="dev's children to exit")
        assert postmasters(data_dir) == []
    finally:
        kill_all(spawned)
