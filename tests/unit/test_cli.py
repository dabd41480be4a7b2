"""The command line's answers to a user's mistakes: one sentence, a non-zero exit, no traceback;
and how it finds `make run`'s database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from booklogr_tasks import cli
from booklogr_tasks.cli.database import chosen_database, unreachable
from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.settings import DEFAULT_DATABASE_URL, get_settings
from booklogr_tasks.db.pool import check_url
from booklogr_tasks.devtools.dev import port_taken, serves_port
from booklogr_tasks.devtools.home import RunLock, find_home
from booklogr_tasks.http.serving import port_problem


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test's environment is read afresh, and the next test's too."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def one_sentence(text: str) -> None:
    assert text.strip() and "\n" not in text.strip() and "Traceback" not in text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_malformed_database_url_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL is not a PostgreSQL URL") as raised:
        check_url("postgres:/broken")
    one_sentence(str(raised.value))

    monkeypatch.setenv("DATABASE_URL", "postgres:/broken")
    assert cli.main(["queue"]) == 2
    err = capsys.readouterr().err
    one_sentence(err)
    assert err.startswith("booklogr-tasks: DATABASE_URL is not a PostgreSQL URL")


def test_dev_refuses_a_malformed_database_url_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgres:/broken")
    assert cli.main(["dev", "--port", str(closed_port())]) == 2
    captured = capsys.readouterr()
    one_sentence(captured.err)
    assert "DATABASE_URL is not a PostgreSQL URL" in captured.err
    assert "booklogr-tasks is running" not in captured.out


def test_an_unreachable_database_is_one_sentence_after_the_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://someone:hunter2@127.0.0.1:{closed_port()}/booklogr"
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(url, connect_timeout=3)
    sentence = unreachable(url, raised.value)
    one_sentence(sentence)
    assert "Connection refused" in sentence and "hunter2" not in sentence

    monkeypatch.setenv("DATABASE_URL", url)
    assert cli.main(["queue"]) == 2
    first, second = capsys.readouterr().err.splitlines()
    assert first == f"database: {url.replace('hunter2', '***')} (from DATABASE_URL)"
    assert second.startswith("booklogr-tasks: cannot use the database") and "DATABASE_URL" in second


def test_without_database_url_or_make_run_it_says_how_to_point_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with chosen_database() as url:
        assert url == DEFAULT_DATABASE_URL
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"database: {DEFAULT_DATABASE_URL} (the default")
    assert "set DATABASE_URL=postgresql://" in line


def test_make_runs_folder_is_found_from_anywhere_below_it(tmp_path: Path) -> None:
    assert find_home(tmp_path) is None
    pgdata = tmp_path / ".booklogr-tasks" / "pgdata"
    pgdata.mkdir(parents=True)
    assert find_home(tmp_path) is None, "a folder without a database is not make run's"
    (pgdata / "PG_VERSION").write_text("17\n")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert find_home(below) == tmp_path / ".booklogr-tasks"


def test_one_run_per_folder_and_the_second_learns_the_firsts_pid_and_address(
    tmp_path: Path,
) -> None:
    first = RunLock(tmp_path)
    assert first.acquire("http://127.0.0.1:8000") is None
    other = RunLock(tmp_path).acquire("http://127.0.0.1:8001")
    assert other is not None
    assert (other.pid, other.address) == (os.getpid(), "http://127.0.0.1:8000")
    first.release()
    again = RunLock(tmp_path)
    assert again.acquire("http://127.0.0.1:8001") is None
    again.release()


def test_a_port_in_use_is_named_with_how_to_pick_another() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        problem = port_problem("127.0.0.1", port)
        assert problem == f"port {port} on 127.0.0.1 is already in use by another program"
        refusal = port_taken("127.0.0.1", port, problem)
        one_sentence(refusal)
        assert f"make run PORT={port + 1}" in refusal
        assert f"pid {os.getpid()}" in refusal, "this process holds the port"
        assert serves_port(os.getpid(), port)
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert not serves_port(sleeper.pid, port), "the answer comes from another process"
        finally:
            sleeper.kill()
            sleeper.wait()
    assert port_problem("127.0.0.1", closed_port()) is None
