"""Export schedules (table `export_schedules`): a user's exports made every day, week or month.

The scheduler turns each due schedule into one ordinary export task of its user; the row is
locked (FOR UPDATE SKIP LOCKED) and moved to its next period in the transaction that creates the
task, so however many schedulers run, each period yields one task. A user at the cap on
unfinished tasks gets no task and the schedule stays due: it runs once there is room.

Keep-N: `scheduled_exports` records the tasks a schedule made; once one's export succeeds, the
schedule's exports past its `keep` are deleted in the same transaction (files after commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, LiteralString

from booklogr_tasks.core.models import Task
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn

Every = Literal["day", "week", "month"]
# The formats a user may schedule, as export_schedules' CHECK constraint allows them.
SCHEDULABLE: tuple[str, ...] = ("csv", "json", "html", "goodreads", "backup")
DUE_BATCH = 100

_COLUMNS: LiteralString = "id, owner_id, format, every, keep, next_run_at, created_at"

# A new schedule runs at once; a changed one keeps its next run unless the new period is
# shorter and would come first.
UPSERT: LiteralString = f"""
INSERT INTO export_schedules (owner_id, format, every, keep, next_run_at)
VALUES (%(owner)s, %(format)s, %(every)s, %(keep)s, now())
ON CONFLICT (owner_id, format) DO UPDATE
   SET keep = EXCLUDED.keep,
       every = EXCLUDED.every,
       next_run_at = CASE WHEN export_schedules.every = EXCLUDED.every
                          THEN export_schedules.next_run_at
                          ELSE least(export_schedules.next_run_at,
                                     now() + ('1 ' || EXCLUDED.every)::interval) END
RETURNING {_COLUMNS}"""

LIST_OWN: LiteralString = f"""
SELECT {_COLUMNS} FROM export_schedules WHERE owner_id = %(owner)s ORDER BY format"""

LIST_ALL: LiteralString = f"SELECT {_COLUMNS} FROM export_schedules ORDER BY next_run_at, id"

DELETE_OWN: LiteralString = """
DELETE FROM export_schedules WHERE owner_id = %(owner)s AND format = %(format)s RETURNING id"""

# Due schedules, each locked until this transaction ends; one another scheduler holds is
# skipped (it is being run), and once that one commits the row is no longer due.
LOCK_DUE: LiteralString = f"""
SELECT {_COLUMNS} FROM export_schedules
 WHERE next_run_at <= now()
 ORDER BY next_run_at, id
 LIMIT %(limit)s
 FOR UPDATE SKIP LOCKED"""

# The first period boundary after now: a schedule missed for days runs once, then keeps its
# time of day (or week, or month).
ADVANCE: LiteralString = """
UPDATE export_schedules s
   SET next_run_at = (
       SELECT min(t) FROM generate_series(s.next_run_at + ('1 ' || s.every)::interval,
                                          now() + ('1 ' || s.every)::interval,
                                          ('1 ' || s.every)::interval) AS t
        WHERE t > now())
 WHERE id = %(id)s
RETURNING next_run_at"""

RECORD_RUN: LiteralString = """
INSERT INTO scheduled_exports (task_id, schedule_id) VALUES (%(task_id)s, %(schedule_id)s)"""

# In the transaction of an export's success: the export, if a schedule made its task.
MARK_EXPORTED: LiteralString = """
UPDATE scheduled_exports SET export_id = %(export_id)s, filename = %(filename)s
 WHERE task_id = %(task_id)s
RETURNING schedule_id"""

# That schedule's finished exports past its newest `keep`, forgotten here.
FORGET_BEYOND_KEEP: LiteralString = """
WITH ranked AS (
    SELECT e.task_id, e.export_id, e.filename,
           row_number() OVER (ORDER BY e.created_at DESC, e.task_id DESC) AS rank
      FROM scheduled_exports e
     WHERE e.schedule_id = %(schedule_id)s AND e.export_id IS NOT NULL
)
DELETE FROM scheduled_exports e USING ranked, export_schedules s
 WHERE e.task_id = ranked.task_id AND s.id = %(schedule_id)s AND ranked.rank > s.keep
RETURNING ranked.export_id, ranked.filename"""

# Their rows: the exports' and their lines in BookLogr's `files`.
DELETE_EXPORTS: LiteralString = """
WITH gone AS (
    DELETE FROM exports
     WHERE format = %(format)s AND owner_id = %(owner)s AND id = ANY(%(ids)s)
    RETURNING filename
)
DELETE FROM files f USING gone WHERE f.owner_id = %(owner)s AND f.filename = gone.filename"""


@dataclass(frozen=True)
class Schedule:
    id: int
    owner_id: int
    format: str
    every: Every
    keep: int
    next_run_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> Schedule:
        return cls(**row)


def put(conn: Conn, owner_id: int, fmt: str, every: Every, keep: int) -> Schedule:
    row = conn.execute(
        UPSERT, {"owner": owner_id, "format": fmt, "every": every, "keep": keep}
    ).fetchone()
    assert row is not None
    return Schedule.of(row)


def list_own(conn: Conn, owner_id: int) -> list[Schedule]:
    return [Schedule.of(r) for r in conn.execute(LIST_OWN, {"owner": owner_id})]


def list_all(conn: Conn) -> list[Schedule]:
    return [Schedule.of(r) for r in conn.execute(LIST_ALL)]


def delete(conn: Conn, owner_id: int, fmt: str) -> bool:
    return conn.execute(DELETE_OWN, {"owner": owner_id, "format": fmt}).fetchone() is not None


@dataclass
class Run:
    created: list[Task]
    waiting: int  # due schedules of users at the cap, left due


def run_due(conn: Conn, cap: int, limit: int = DUE_BATCH) -> Run:
    """One export task for each due schedule (in the caller's transaction, which must commit
    for any of it to count)."""
    run = Run(created=[], waiting=0)
    for schedule in [Schedule.of(r) for r in conn.execute(LOCK_DUE, {"limit": limit})]:
        data = f'{{"owner_id": {schedule.owner_id}}}'
        task = tasks.create_task_under_cap(
            conn, f"{schedule.format}_export", data, schedule.owner_id, cap
        )
        if task is None:
            run.waiting += 1
            continue
        conn.execute(RECORD_RUN, {"task_id": task.id, "schedule_id": schedule.id})
        conn.execute(ADVANCE, {"id": schedule.id})
        run.created.append(task)
    return run


def keep_newest(
    conn: Conn, task_id: int, fmt: str, export_id: int, filename: str, owner_id: int
) -> list[str]:
    """In an export's success transaction: if a schedule made the task, delete that schedule's
    exports past its `keep` (rows here); returns their files, to delete after commit."""
    mark = {"task_id": task_id, "export_id": export_id, "filename": filename}
    row = conn.execute(MARK_EXPORTED, mark).fetchone()
    if row is None:
        return []  # an export the user asked for: never deleted here
    gone = conn.execute(FORGET_BEYOND_KEEP, {"schedule_id": row["schedule_id"]}).fetchall()
    if gone:
        ids = [g["export_id"] for g in gone]
        conn.execute(DELETE_EXPORTS, {"format": fmt, "owner": owner_id, "ids": ids})
    return [g["filename"] for g in gone]
