"""The listener as real processes on a real database: pickup, sweeps, races, dropped connections."""

from __future__ import annotations

import csv
import signal
from pathlib import Path
from typing import Any

import pytest

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


def _all_done(conn: Any, total: int) -> bool:
    return count_with_status(conn, "success") == total


def test_task_inserted_with_plain_sql_is_exported(
    env: dict[str, str], conn: Any, export_folder: Path, tmp_path: Path
) -> None:
    books = seed_books(conn, owner_id=5)
    with service(["listen", "--nickname", "pytest"], env, tmp_path / "listener.log") as listener:
        task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
        wait_until(lambda: task_row(conn, task_id)["status"] == "success", what="export")
        row = task_row(conn, task_id)
        assert row["worker"].startswith("pytest:") and len(row["worker"]) == len("pytest:") + 36
        assert listener.terminate() == 0
    export = conn.execute(
        "SELECT filename FROM csv_export WHERE task_id = %s", (task_id,)
    ).fetchone()
    with open(export_folder / export["filename"], encoding="utf-8", newline="") as f:
        assert [r["isbn"] for r in csv.DictReader(f)] == [b["isbn"] for b in books]


def test_tasks_created_before_the_listener_starts_are_all_done(
    env: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    seed_books(conn, owner_id=1, count=2)
    for _ in range(20):
        insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    with service(["listen"], env, tmp_path / "listener.log"):
        wait_until(lambda: _all_done(conn, 20), what="20 tasks")


def test_task_without_notify_is_found_by_the_sweep(
    env: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    with service(["listen"], env, tmp_path / "listener.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        conn.execute("ALTER TABLE tasks DISABLE TRIGGER tasks_announce")
        task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
        # TASK_SWEEP_SECONDS is 0.5 in tests.
        wait_until(
            lambda: task_row(conn, task_id)["status"] == "success",
            timeout=10,
            what="sweep to find the silent task",
        )


def test_three_listeners_racing_over_500_tasks(
    env: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    seed_books(conn, owner_id=1, count=3)
    with (
        service(["listen", "--nickname", "a"], env, tmp_path / "a.log"),
        service(["listen", "--nickname", "b"], env, tmp_path / "b.log"),
        service(["listen", "--nickname", "c"], env, tmp_path / "c.log"),
    ):
        insert_tasks(conn, "csv_export", owner_id=1, count=500)
        wait_until(lambda: _all_done(conn, 500), timeout=120, interval=0.2, what="500 tasks")
    assert conn.execute(
        "SELECT max(attempts) AS hi, min(attempts) AS lo FROM tasks"
    ).fetchone() == {"hi": 1, "lo": 1}
    per_task = conn.execute(
        "SELECT count(*) AS exports, count(DISTINCT task_id) AS tasks FROM csv_export"
    ).fetchone()
    assert per_task == {"exports": 500, "tasks": 500}
    workers = conn.execute("SELECT DISTINCT split_part(worker, ':', 1) AS w FROM tasks").fetchall()
    assert len(workers) >= 2, "the work should be shared"


def test_listener_survives_terminated_backends(
    env: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    with service(["listen"], env, tmp_path / "listener.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        first = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
        wait_until(lambda: task_row(conn, first)["status"] == "success", what="first task")
        for _ in range(3):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
            wait_until(
                lambda tid=task_id: task_row(conn, tid)["status"] == "success",  # type: ignore[misc]
                timeout=20,
                what="task after terminate",
            )
        assert listener.proc.poll() is None


def test_sigterm_exits_zero(env: dict[str, str], tmp_path: Path) -> None:
    with service(["listen"], env, tmp_path / "listener.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        listener.proc.send_signal(signal.SIGINT)
        assert listener.proc.wait(20) == 0


@pytest.mark.parametrize("command", [["listen"], ["api", "--port", "0"]])
def test_unmigrated_database_stops_with_the_command_to_run(
    command: list[str], env: dict[str, str], empty_db_url: str, tmp_path: Path
) -> None:
    with service(command, {**env, "DATABASE_URL": empty_db_url}, tmp_path / "s.log") as proc:
        assert proc.proc.wait(30) == 3
        assert "run `booklogr-tasks migrate`" in proc.log()
