"""Issue 12 §2: beside a real BookLogr, listeners never touch BookLogr's own tasks.

BookLogr's API inserts its export and share tasks itself (data is a Python repr such as `{}`, no
owner_id, no NOTIFY of its own), marks them started with a NULL worker and runs them in a thread.
Two listeners with a short lease, a fast sweep and frequent retention run next to such rows; the
rows come out exactly as BookLogr left them, while the listeners' own work in the same table
(a fresh task, a lost task, an expired one) proves every statement had its chance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.db.migrate import migrate
from booklogr_tasks.db.pool import connect

from tests.helpers import service, task_row, wait_until
from tests.integration.test_booklogr_db import BOOKLOGR_SCHEMA

pytestmark = pytest.mark.slow

# As BookLogr's models write them: naive UTC timestamps, data = str(request.json["data"]).
BOOKLOGR_ROWS = """
INSERT INTO tasks (type, data, status, worker, created_on, updated_on, created_by) VALUES
 -- an export BookLogr's API is running in its thread (started long ago, as far as a lease goes)
 ('csv_export', '{}', 'started', NULL, %(old)s, %(old)s, 1),
 -- one it has just created and not yet started
 ('json_export', '{}', 'fresh', NULL, %(now)s, NULL, 1),
 -- a Mastodon share, started and never finished
 ('share_book_event', '{''book_id'': 1}', 'started', NULL, %(old)s, %(old)s, 1),
 ('share_book_event', '{''book_id'': 2}', 'fresh', NULL, %(now)s, NULL, 1),
 -- a long finished export (older than this service's retention)
 ('html_export', '{}', 'success', NULL, %(ancient)s, %(ancient)s, 1),
 -- a task some other program claimed with a worker name of its own
 ('csv_export', '{"owner_id": 1}', 'started', 'other-program:1', %(old)s, %(old)s, 1)
RETURNING id"""

# This service's own work in the same table.
OURS = """
INSERT INTO tasks (type, data, status, worker, updated_on, created_by, attempts) VALUES
 ('csv_export', '{"owner_id": 1}', 'fresh', NULL, NULL, 1, 0),
 ('csv_export', '{"owner_id": 1}', 'started', 'gone:00000000-0000-0000-0000-000000000000',
  now() - interval '1 hour', 1, 1),
 ('csv_export', '{"owner_id": 1}', 'success', 'w:00000000-0000-0000-0000-000000000001',
  now() - interval '90 days', 1, 1)
RETURNING id"""


def test_listeners_leave_booklogrs_own_tasks_exactly_as_booklogr_left_them(
    empty_db_url: str, export_folder: Path, tmp_path: Path
) -> None:
    url = empty_db_url
    with connect(url, autocommit=True) as conn:
        conn.execute(BOOKLOGR_SCHEMA.encode())
    migrate(url)
    with connect(url, autocommit=True) as conn:
        stamps = conn.execute(
            "SELECT (now() AT TIME ZONE 'UTC') AS now,"
            " (now() AT TIME ZONE 'UTC') - interval '1 hour' AS old,"
            " (now() AT TIME ZONE 'UTC') - interval '90 days' AS ancient"
        ).fetchone()
        theirs = [r["id"] for r in conn.execute(BOOKLOGR_ROWS, stamps).fetchall()]
        fresh, lost, expired = [r["id"] for r in conn.execute(OURS).fetchall()]
        everything_before = _rows(conn)
        before = {tid: everything_before[tid] for tid in theirs}

        env = {
            **os.environ,
            "DATABASE_URL": url,
            "EXPORT_FOLDER": str(export_folder),
            "TASK_LEASE_SECONDS": "1",
            "TASK_SWEEP_SECONDS": "0.2",
            "TASK_MAX_ATTEMPTS": "3",
            "TASK_RETRY_BASE_SECONDS": "0",
            "RETENTION_INTERVAL_SECONDS": "0.3",
            "TASK_RETENTION_DAYS": "30",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        with (
            service(["listen", "--nickname", "a"], env, tmp_path / "a.log") as a,
            service(["listen", "--nickname", "b"], env, tmp_path / "b.log") as b,
        ):
            # Each of these needs the very statements that must skip BookLogr's rows: a claim
            # (the fresh task), a reap and a claim (the lost one), retention (the expired one).
            wait_until(
                lambda: (
                    task_row(conn, fresh)["status"] == "success"
                    and task_row(conn, lost)["status"] == "success"
                    and not conn.execute("SELECT 1 FROM tasks WHERE id = %s", (expired,)).fetchone()
                ),
                timeout=60,
                what="the listeners' own work",
            )
            # One more task through the same table, after all that.
            late = conn.execute(
                "INSERT INTO tasks (type, data, created_by) VALUES "
                "('csv_export', '{\"owner_id\": 1}', 1) RETURNING id"
            ).fetchone()["id"]
            wait_until(lambda: task_row(conn, late)["status"] == "success", what="a late task")
            assert a.proc.poll() is None and b.proc.poll() is None
        after = _rows(conn)
    assert {tid: after.get(tid) for tid in theirs} == before
    assert after[lost]["attempts"] == 2  # reaped once, then run


def _rows(conn: Any) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()}
