"""Issue 14: no healthy task lost to a busy neighbour, no attempt undoing another, errors for
users, backoff after lost connections and timeouts, logs without false alarms."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import load_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.storage.local import LocalFolderStore
from booklogr_tasks.worker.invokers import InProcessInvoker
from booklogr_tasks.worker.lease import Leases
from booklogr_tasks.worker.runner import Runner, RunOutcome

from tests import jobs_for_tests
from tests.helpers import insert_task, service, task_row, wait_until

TEST_TYPES = [spec.task_type for spec in jobs_for_tests.SPECS]


@pytest.fixture
def renv(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "BOOKLOGR_TASKS_JOB_MODULES": "tests.jobs_for_tests",
        "TASK_SWEEP_SECONDS": "0.3",
        "TASK_RETRY_BASE_SECONDS": "0.2",
        "TASK_RETRY_MAX_SECONDS": "1",
    }


# --- 1. a long transaction of one task never delays another task's heartbeat ------------------


@pytest.mark.slow
def test_a_slow_success_transaction_costs_no_other_task_its_lease(
    renv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    """One task's success transaction holds its row for three leases while three other tasks of
    the same listener run; the old one-statement heartbeat waited on that row lock, so the
    reaper took the others away (issue 14)."""
    lease = 2.0
    env = {**renv, "TASK_LEASE_SECONDS": str(lease), "TASK_MAX_ATTEMPTS": "3"}
    with service(["listen", "--concurrency", "4"], env, tmp_path / "l.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        others = [
            insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 4 * lease}, 1)
            for _ in range(3)
        ]
        wait_until(
            lambda: all(task_row(conn, t)["status"] == "started" for t in others),
            what="the other tasks to run",
        )
        slow = insert_task(conn, "test_slow_commit", {"owner_id": 1, "seconds": 3 * lease}, 1)
        # The slow transaction is under way (it holds the row) while the others run.
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity"
                    " WHERE query LIKE 'SELECT pg_sleep%%' AND datname = current_database()"
                ).fetchone()["n"]
                == 1
            ),
            what="the slow success transaction",
        )
        wait_until(
            lambda: all(task_row(conn, t)["status"] != "started" for t in [slow, *others]),
            timeout=60,
            what="every task to end",
        )
        log = listener.log()
    rows = [task_row(conn, t) for t in [slow, *others]]
    assert [(r["status"], r["attempts"]) for r in rows] == [("success", 1)] * 4
    assert "lease lost" not in log and "reaped" not in log


def test_the_heartbeat_skips_a_row_locked_by_its_own_success_transaction(
    db_url: str, conn: Any
) -> None:
    busy = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    idle = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    for task_id in (busy, idle):
        assert tasks.claim_task(conn, task_id, "w", ["csv_export"])
    before = task_row(conn, idle)["updated_on"]
    from booklogr_tasks.db.pool import connect

    with connect(db_url) as finishing:  # holds `busy`'s row until it ends
        assert tasks.finish_task(finishing, busy, "w", None, attempt=1)
        with connect(db_url, autocommit=True) as beat:
            beat.execute("SET lock_timeout = 1")  # waiting at all would fail the statement
            owned = tasks.heartbeat(beat, "w", {busy: 1, idle: 1}, {idle: {"done": 1}})
        assert owned == {busy, idle}  # the locked row still counts as owned
        finishing.rollback()
    assert task_row(conn, idle)["updated_on"] > before
    assert tasks.get_task(conn, idle).progress == {"done": 1}


# --- 2. one attempt never undoes another ------------------------------------------------------


def test_an_attempt_that_lost_its_task_cannot_record_anything(conn: Any) -> None:
    """Each claim is its own attempt, even by the same worker: a guard names (worker, attempt)."""
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    assert tasks.claim_task(conn, task_id, "w", ["csv_export"])
    conn.execute("UPDATE tasks SET status = 'fresh', worker = NULL WHERE id = %s", (task_id,))
    assert tasks.claim_task(conn, task_id, "w", ["csv_export"])  # attempt 2, same worker
    before = task_row(conn, task_id)
    assert tasks.heartbeat(conn, "w", {task_id: 1}, {}) == set()
    assert tasks.finish_task(conn, task_id, "w", {"x": 1}, attempt=1) is False
    assert tasks.fail_task(conn, task_id, "w", "boom", attempt=1) is False
    assert tasks.release_task(conn, task_id, "w", attempt=1) is False
    assert tasks.requeue_after_error(conn, task_id, "w", 3, "x", attempt=1) is None
    assert task_row(conn, task_id) == before
    assert tasks.finish_task(conn, task_id, "w", {"x": 2}, attempt=2) is True


def test_two_attempts_in_one_process_run_one_after_the_other(
    settings: Any, conn: Any, test_job_types: None
) -> None:
    """The reaper gave the task away while its first attempt still ran, and the same process
    claimed it again: the first attempt is stopped before the second starts."""
    jobs_for_tests.ATTEMPT_EVENTS.clear()
    runner = Runner(settings, "w")
    task_id = insert_task(conn, "test_attempts", {"owner_id": 1, "seconds": 1}, 1)
    first = tasks.claim_task(conn, task_id, "w", TEST_TYPES)
    assert first is not None
    outcomes: dict[int, str] = {}
    one = threading.Thread(target=lambda: outcomes.update({1: runner.execute(first)}))
    one.start()
    wait_until(lambda: (task_id, 1, "start") in jobs_for_tests.ATTEMPT_EVENTS, what="attempt 1")
    # What a reaper does to a task whose heartbeat it thinks is lost; the same worker claims it.
    conn.execute("UPDATE tasks SET status = 'fresh', worker = NULL WHERE id = %s", (task_id,))
    second = tasks.claim_task(conn, task_id, "w", TEST_TYPES)
    assert second is not None and second.attempts == 2
    two = threading.Thread(target=lambda: outcomes.update({2: runner.execute(second)}))
    two.start()
    one.join(30)
    two.join(30)
    runner.close()
    assert outcomes == {1: "lost", 2: "success"}
    assert [
        (task_id, 1, "start"),
        (task_id, 1, "stop"),
        (task_id, 2, "start"),
        (task_id, 2, "stop"),
    ] == jobs_for_tests.ATTEMPT_EVENTS
    row = task_row(conn, task_id)
    assert (row["status"], row["attempts"], row["worker"]) == ("success", 2, "w")


def test_tasks_waiting_for_a_thread_keep_their_lease_and_go_back_unrun_on_shutdown(
    settings: Any, conn: Any, test_job_types: None
) -> None:
    """While jobs are quick the invoker claims a line of tasks beyond its threads. Their leases
    are beaten from the claim, so a long wait costs them nothing, and a shutdown gives them back
    without running them and without counting an attempt."""
    lease = 1.0
    runner = Runner(settings.model_copy(update={"task_lease_seconds": lease}), "w", 4, True)
    invoker = InProcessInvoker(runner, concurrency=1)
    invoker._typical_seconds = 0.0  # as after a run of quick jobs
    assert invoker.free_slots() == 2  # one thread, one more task waiting in line
    busy = insert_task(conn, "test_sleep", {"owner_id": 1, "seconds": 60}, 1)
    waiting = insert_task(conn, "test_noop", {"owner_id": 1}, 1)
    claimed = tasks.claim_batch(conn, "w", TEST_TYPES, invoker.free_slots())
    assert [t.id for t in claimed] == [busy, waiting]
    for task in claimed:
        invoker.start(task)
    assert invoker.free_slots() == 0
    time.sleep(3 * lease)  # three leases in line behind a busy thread
    reaped = tasks.reap(conn, lease, 3, TEST_TYPES, settings.retry_delay)
    assert (reaped.requeued, reaped.failed) == ([], [])
    assert task_row(conn, waiting)["status"] == "started"

    invoker.shutdown(grace_seconds=0)

    for task_id in (busy, waiting):
        row = task_row(conn, task_id)
        assert (row["status"], row["attempts"], row["worker"]) == ("fresh", 0, None)


_WRITER = """
import sys, time
from pathlib import Path
from booklogr_tasks.storage.local import LocalFolderStore
pending = LocalFolderStore(Path(sys.argv[1])).begin("7/csv-5-1.csv", "csv")
pending.write(b"half a file")
print(pending.temp, flush=True)
time.sleep(600)
"""


def test_leftover_cleanup_never_removes_a_file_another_attempt_is_writing(
    export_folder: Path,
) -> None:
    store = LocalFolderStore(export_folder)
    mine = store.begin("7/csv-5-2.csv", "csv")  # an attempt of this process, still writing
    mine.write(b"x")
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(export_folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        theirs = Path(writer.stdout.readline().strip())  # another process's attempt, writing
        assert theirs.exists()
        assert store.discard_leftovers(7, "csv", 5) == 0
        assert theirs.exists() and Path(mine.temp).exists()  # type: ignore[attr-defined]
        writer.send_signal(signal.SIGKILL)  # its writer dies: now it is a leftover
        writer.wait(10)
        assert store.discard_leftovers(7, "csv", 5) == 1
        assert not theirs.exists() and Path(mine.temp).exists()  # type: ignore[attr-defined]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
        writer.stdout.close()  # type: ignore[union-attr]
    mine.discard()
    assert store.discard_leftovers(7, "csv", 5) == 0
    assert [p for p in export_folder.rglob("*") if p.is_file()] == []


def test_cleanup_waits_for_a_late_loser_and_removes_what_it_renamed(export_folder: Path) -> None:
    """A loser descheduled between its last statement and its rename publishes its file after
    the next attempt's cleanup started: the cleanup waits for the file to be let go and removes
    it under its final name."""
    loser = LocalFolderStore(export_folder).begin("7/csv-5-3.csv", "csv")
    loser.write(b"complete, but its success will not commit")
    loser.complete()
    removed: list[int] = []
    cleanup = threading.Thread(
        target=lambda: removed.append(
            LocalFolderStore(export_folder, writer_grace=60).discard_leftovers(7, "csv", 5)
        )
    )
    cleanup.start()
    loser.publish()  # renamed into place, then let go
    cleanup.join(60)
    assert removed == [1]
    assert [p for p in export_folder.rglob("*") if p.is_file()] == []


# --- 3. errors are sentences for users; details go to the log ---------------------------------


def test_a_crash_shows_the_user_a_sentence_and_logs_the_details(
    settings: Any, conn: Any, test_job_types: None, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = insert_task(conn, "test_crash", {"owner_id": 1}, 1)
    with caplog.at_level(logging.INFO):
        assert Runner(settings, "w").run_by_id(task_id, TEST_TYPES) == "failure"
    error = task_row(conn, task_id)["error"]
    assert error.startswith("The task failed because of an internal error")
    assert f"task id {task_id}" in error
    for internal in ("FileNotFoundError", "/srv/secret", "Traceback", ".part"):
        assert internal not in error
    crashed = [r for r in caplog.records if r.getMessage() == "task crashed"]
    assert crashed and crashed[0].task_id == task_id  # type: ignore[attr-defined]
    assert "/srv/secret/exports" in caplog.text and "FileNotFoundError" in caplog.text


# --- 4. lost connections and timeouts are retried with backoff --------------------------------


@pytest.mark.parametrize(
    ("task_type", "reason", "sentence"),
    [
        ("test_db_timeout", "timeout", "took longer than the database allows"),
        ("test_db_disconnect", "connection", "lost its database connection"),
    ],
)
def test_timeouts_and_lost_connections_back_off_then_give_up(
    renv: dict[str, str],
    conn: Any,
    test_job_types: None,
    caplog: pytest.LogCaptureFixture,
    task_type: str,
    reason: str,
    sentence: str,
) -> None:
    settings = load_settings(
        {
            **renv,
            "TASK_MAX_ATTEMPTS": "3",
            "TASK_RETRY_BASE_SECONDS": "60",
            "TASK_RETRY_MAX_SECONDS": "600",
        }
    )
    runner = Runner(settings, "w")
    task_id = insert_task(conn, task_type, {"owner_id": 1}, 1)
    waits = []
    with caplog.at_level(logging.INFO):
        for attempt in (1, 2):
            assert runner.run_by_id(task_id, TEST_TYPES) == RunOutcome.REQUEUED
            row = task_row(conn, task_id)
            assert (row["status"], row["attempts"], row["error"]) == ("fresh", attempt, None)
            waits.append(
                conn.execute(
                    "SELECT extract(epoch FROM run_after - now()) AS s FROM tasks WHERE id = %s",
                    (task_id,),
                ).fetchone()["s"]
            )
            # Not due yet: neither a claim by id, nor a batch claim, nor a sweep takes it.
            assert runner.run_by_id(task_id, TEST_TYPES) == "skipped"
            assert tasks.claim_batch(conn, "other", TEST_TYPES, 10) == []
            assert tasks.sweep(conn, TEST_TYPES) == []
            # The status JSON says when it runs again.
            assert tasks.get_task(conn, task_id, 1).run_after == row["run_after"]
            conn.execute("UPDATE tasks SET run_after = now() WHERE id = %s", (task_id,))
        assert runner.run_by_id(task_id, TEST_TYPES) == "failure"
    runner.close()
    # Exponential: 60 s after the first attempt, 120 s after the second.
    assert 55 < waits[0] <= 60 and 115 < waits[1] <= 120
    row = task_row(conn, task_id)
    assert (row["status"], row["attempts"], row["run_after"]) == ("failure", 3, None)
    assert sentence in row["error"] and "psycopg" not in row["error"]
    requeued = [r for r in caplog.records if r.getMessage() == "task requeued"]
    assert [r.reason for r in requeued] == [reason, reason]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_listener_runs_a_task_once_its_backoff_has_passed(
    renv: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    with service(["listen"], renv, tmp_path / "l.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        # Announced now (the trigger notifies), due in a second: only a later sweep can run it.
        task_id = conn.execute(
            "INSERT INTO tasks (type, data, created_by, run_after) "
            "VALUES ('test_noop', '{\"owner_id\": 1}', 1, now() + interval '1 second') "
            "RETURNING id"
        ).fetchone()["id"]
        wait_until(lambda: task_row(conn, task_id)["status"] == "success", what="the late run")
    row = task_row(conn, task_id)
    assert row["attempts"] == 1 and row["updated_on"] >= row["created_at"]


# --- 7. no "lease lost" for a finished task ---------------------------------------------------


def test_the_heartbeat_does_not_call_a_finishing_task_lost(
    db_url: str, conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    finishing_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    stolen_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    for task_id in (finishing_id, stolen_id):
        assert tasks.claim_task(conn, task_id, "w", ["csv_export"])
    monitor = Leases(db_url, "w", interval=3600)  # beats only when told to
    finishing = monitor.hold(finishing_id, 1)
    stolen = monitor.hold(stolen_id, 1)
    finishing.finishing()  # its success commits while the beat runs
    assert tasks.finish_task(conn, finishing_id, "w", None, attempt=1)
    conn.execute("UPDATE tasks SET worker = 'thief' WHERE id = %s", (stolen_id,))
    with caplog.at_level(logging.INFO):
        monitor.beat()
    monitor.stop()
    assert not finishing.lost.is_set() and stolen.lost.is_set()
    lost = [r for r in caplog.records if r.getMessage() == "lease lost"]
    assert [r.task_id for r in lost] == [stolen_id]  # type: ignore[attr-defined]


# --- 5. memory goes back after a job --------------------------------------------------------


def test_the_claims_connection_is_renewed_after_a_large_task(
    renv: dict[str, str], conn: Any, db_url: str, test_job_types: None
) -> None:
    """libpq keeps a connection's buffers as large as the largest message it carried: the
    connection that claimed a large task is replaced (and the task still runs)."""
    from booklogr_tasks.worker.listener import RECYCLE_AFTER_BYTES, ClaimsConnection, Listener

    class Recorder:
        def __init__(self) -> None:
            self.started: list[int] = []

        def free_slots(self) -> int:
            return 4 - len(self.started)

        def claim_threshold(self) -> int:
            return 1

        def start(self, task: Any) -> None:
            self.started.append(task.id)

        def shutdown(self, grace_seconds: float) -> None:
            pass

    listener = Listener(load_settings(renv), ["test_noop"], "w", Recorder())
    big = insert_task(conn, "test_noop", '{"owner_id": 1, "pad": "' + "x" * 10 + '"}', 1)
    small = insert_task(conn, "test_noop", {"owner_id": 1}, 1)
    with ClaimsConnection(db_url) as claims:
        first = claims.conn
        listener._claim_and_start(listener.invoker, claims)  # type: ignore[arg-type]
        assert claims.conn is first  # small tasks: kept
        conn.execute(
            "UPDATE tasks SET status = 'fresh', data = %s WHERE id = %s",
            ('{"owner_id": 1, "pad": "' + "x" * RECYCLE_AFTER_BYTES + '"}', big),
        )
        listener._maybe_more = True
        listener._claim_and_start(listener.invoker, claims)  # type: ignore[arg-type]
        assert claims.conn is not first and first.closed and not claims.conn.closed
    os.close(listener._wake_r)
    os.close(listener._wake_w)
    assert listener.invoker.started == [big, small, big]  # type: ignore[attr-defined]


def test_release_memory_trims_the_heap() -> None:
    from booklogr_tasks.worker.memory import release_memory

    blocks = [bytearray(1 << 20) for _ in range(64)]
    del blocks
    assert release_memory() is True  # glibc: malloc_trim was called
