"""Issue 32 §1: which rows of `tasks` are this service's is decided once, at insert.

A row is this service's when its `data` parses as a JSON object whose top-level `owner_id` is a
positive integer (schema 0012 fills `tasks.owner_id`). Every other row (BookLogr's Python reprs,
`{}`, free text, an owner that is nested, a string, zero or negative) is never claimed, beaten,
reaped, requeued or deleted by a listener, whatever its type, status or age.
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

# data → the owner the insert trigger records (None: not this service's row).
CLASSIFIED: list[tuple[str, int | None]] = [
    ('{"owner_id": 7}', 7),
    (' \n{"type": "x", "owner_id": 12, "csv": "a,b"}', 12),
    ('{"owner_id": 9223372036854775807}', 2**63 - 1),
    ('{"csv": "a\\u0000b", "owner_id": 3}', 3),  # valid JSON that PostgreSQL text cannot hold
    ('{"owner_id": "x", "owner_id": 4}', 4),  # the last of duplicate keys, as Python reads it
    ("{'note': '\"owner_id\"'}", None),  # a Python repr that mentions the key
    ("{'owner_id': 1}", None),  # a Python repr of an owner
    ("{}", None),
    ('{"book": {"owner_id": 1}}', None),  # nested
    ('[{"owner_id": 1}]', None),  # not an object
    ('{"owner_id": "1"}', None),  # a string
    ('{"owner_id": 0}', None),
    ('{"owner_id": -1}', None),
    ('{"owner_id": 1.5}', None),
    ('{"owner_id": 1.0}', None),
    ('{"owner_id": 1e40}', None),
    ('{"owner_id": 1e0}', None),  # a float to Python
    ('{"owner_id": 9223372036854775808}', None),  # past bigint
    ('{"owner_id": true}', None),
    ('{"owner_id": null}', None),
    ('{"owner_id": 1', None),  # broken JSON
    ('please share "owner_id": 1 with everyone', None),  # free text
    ("", None),
]


@pytest.mark.parametrize(("data", "owner"), CLASSIFIED)
def test_the_insert_trigger_records_the_owner_only_for_a_top_level_positive_integer(
    conn: Any, data: str, owner: int | None
) -> None:
    row = conn.execute(
        "INSERT INTO tasks (type, data, created_by) VALUES ('csv_export', %s, 1)"
        " RETURNING owner_id, data",
        (data,),
    ).fetchone()
    assert row == {"owner_id": owner, "data": data}


def test_an_owner_given_by_the_inserter_is_not_taken_on_trust(conn: Any) -> None:
    row = conn.execute(
        "INSERT INTO tasks (type, data, created_by, owner_id) VALUES ('csv_export', '{}', 1, 1)"
        " RETURNING owner_id"
    ).fetchone()
    assert row == {"owner_id": None}


def test_the_migration_classifies_the_rows_already_there(empty_db_url: str) -> None:
    with connect(empty_db_url, autocommit=True) as conn:
        conn.execute(BOOKLOGR_SCHEMA.encode())
        ids = [
            conn.execute(
                "INSERT INTO tasks (type, data, status, created_by) VALUES ('csv_export', %s,"
                " 'success', 1) RETURNING id",
                (data,),
            ).fetchone()["id"]
            for data, _ in CLASSIFIED
        ]
        before = conn.execute("SELECT * FROM tasks WHERE id = ANY(%s) ORDER BY id", (ids,))
        old_rows = before.fetchall()
    migrate(empty_db_url)
    with connect(empty_db_url) as conn:
        after = conn.execute("SELECT * FROM tasks WHERE id = ANY(%s) ORDER BY id", (ids,))
        new_rows = after.fetchall()
    assert [row["owner_id"] for row in new_rows] == [owner for _, owner in CLASSIFIED]
    # Nothing else of any row changed.
    for old, new in zip(old_rows, new_rows, strict=True):
        assert {k: new[k] for k in old} == dict(old)


# Rows another program wrote with data that is not this service's, in every state a listener
# statement looks at: fresh (claim, sweep), started long ago by some worker with attempts
# counted (heartbeat, reap, requeue), finished long ago (retention).
NOT_OURS = [data for data, owner in CLASSIFIED if owner is None]
THEIR_ROWS = """
INSERT INTO tasks (type, data, status, worker, attempts, updated_on, created_by)
SELECT 'csv_export', d.data, s.status, s.worker, s.attempts, now() - s.age, 1
  FROM unnest(%(data)s::text[]) AS d(data)
 CROSS JOIN (VALUES
    ('fresh', NULL, 0, interval '0'),
    ('started', 'other:00000000-0000-0000-0000-000000000000', 1, interval '1 hour'),
    ('failure', 'other:00000000-0000-0000-0000-000000000000', 3, interval '90 days'),
    ('success', 'other:00000000-0000-0000-0000-000000000000', 1, interval '90 days')
 ) AS s(status, worker, attempts, age)
RETURNING id"""

# This service's own work in the same table, needing each of those statements.
OURS = """
INSERT INTO tasks (type, data, status, worker, updated_on, created_by, attempts) VALUES
 ('csv_export', '{"owner_id": 1}', 'fresh', NULL, NULL, 1, 0),
 ('csv_export', '{"owner_id": 1}', 'started', 'gone:00000000-0000-0000-0000-000000000000',
  now() - interval '1 hour', 1, 1),
 ('csv_export', '{"owner_id": 1}', 'success', 'w:00000000-0000-0000-0000-000000000001',
  now() - interval '90 days', 1, 1)
RETURNING id"""


@pytest.mark.slow
def test_listeners_leave_rows_that_are_not_theirs_exactly_as_inserted(
    db_url: str, export_folder: Path, tmp_path: Path
) -> None:
    with connect(db_url, autocommit=True) as conn:
        theirs = [r["id"] for r in conn.execute(THEIR_ROWS, {"data": NOT_OURS}).fetchall()]
        fresh, lost, expired = [r["id"] for r in conn.execute(OURS).fetchall()]
        before = {
            row["id"]: row
            for row in conn.execute("SELECT * FROM tasks WHERE id = ANY(%s)", (theirs,))
        }
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
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
            wait_until(
                lambda: (
                    task_row(conn, fresh)["status"] == "success"
                    and task_row(conn, lost)["status"] == "success"
                    and not conn.execute("SELECT 1 FROM tasks WHERE id = %s", (expired,)).fetchone()
                ),
                timeout=60,
                what="the listeners' own work",
            )
            # Freshly inserted rows of the same kinds, announced to running listeners.
            late = [
                conn.execute(
                    "INSERT INTO tasks (type, data, created_by) VALUES ('csv_export', %s, 1)"
                    " RETURNING id",
                    (data,),
                ).fetchone()["id"]
                for data in NOT_OURS
            ]
            late_before = {tid: task_row(conn, tid) for tid in late}
            mine = conn.execute(
                "INSERT INTO tasks (type, data, created_by) VALUES "
                "('csv_export', '{\"owner_id\": 1}', 1) RETURNING id"
            ).fetchone()["id"]
            wait_until(lambda: task_row(conn, mine)["status"] == "success", what="a late task")
            assert a.proc.poll() is None and b.proc.poll() is None
        after = {
            row["id"]: row
            for row in conn.execute("SELECT * FROM tasks WHERE id = ANY(%s)", (theirs + late,))
        }
    assert {tid: after.get(tid) for tid in theirs} == before
    assert {tid: after.get(tid) for tid in late} == late_before
