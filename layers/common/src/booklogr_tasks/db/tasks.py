"""The task lifecycle: create, read, retry, claim, heartbeat, finish, fail, release, sweep, reap.

Every function takes a connection and runs inside the caller's transaction, so callers can
combine steps (an export's row and its task's success commit together). The SQL is in queries.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

from psycopg import Cursor, IsolationLevel
from psycopg.types.json import Jsonb

from booklogr_tasks.core.errors import (
    OwnerNotAUser,
    PendingCapReached,
    TaskNotFound,
    TaskNotRetryable,
)
from booklogr_tasks.core.models import ExportRecord, Task, TaskReport, upload_named_in
from booklogr_tasks.core.reports import bounded_error, bounded_result
from booklogr_tasks.core.settings import RetryDelay
from booklogr_tasks.db import queries
from booklogr_tasks.db.pool import Conn, connect

DEFAULT_DELAY = RetryDelay()


def create_task(conn: Conn, task_type: str, data: str, created_by: int) -> Task:
    """Insert a fresh task; the trigger announces it when the caller's transaction commits."""
    row = conn.execute(
        queries.INSERT_TASK, {"type": task_type, "data": data, "created_by": created_by}
    ).fetchone()
    assert row is not None
    return Task.model_validate(row)


def get_task(conn: Conn, task_id: int, owner_id: int | None = None) -> TaskReport:
    if owner_id is None:
        row = conn.execute(queries.GET_TASK, {"id": task_id}).fetchone()
    else:
        row = conn.execute(queries.GET_OWN_TASK, {"id": task_id, "owner": owner_id}).fetchone()
    if row is None:
        raise TaskNotFound(task_id)
    return TaskReport.model_validate(row)


def list_tasks(
    conn: Conn, owner_id: int, *, limit: int = 50, before: int | None = None
) -> list[TaskReport]:
    rows = conn.execute(
        queries.LIST_OWN_TASKS, {"owner": owner_id, "limit": limit, "before": before}
    ).fetchall()
    return [TaskReport.model_validate(row) for row in rows]


# A retry with no cap named: as many as the database can count.
NO_CAP = 2**62


def retry_task(
    conn: Conn, task_id: int, owner_id: int, types: list[str], cap: int = NO_CAP
) -> Task:
    """failure → fresh, error and attempts cleared; the trigger announces it again. Only for a
    task of these types that this service runs (not one BookLogr runs itself), and only while
    the owner has fewer than `cap` unfinished tasks (PendingCapReached, nothing changed). One
    statement, ordered with the owner's creates like create_task_under_cap."""
    params = {"id": task_id, "owner": owner_id, "types": types, "cap": cap}
    row = conn.execute(queries.RETRY_TASK_UNDER_CAP, params).fetchone()
    if row is not None:
        return Task.model_validate(row)
    refused = conn.execute(queries.RETRY_REFUSED, params).fetchone()
    if refused is None:
        raise TaskNotFound(task_id)
    if refused["status"] == "failure" and refused["ours"]:
        raise PendingCapReached(cap)
    # A failed task that is not this service's; or not failed at all.
    raise TaskNotRetryable(refused["status"], ours=refused["status"] != "failure")


def _planned_now(
    conn: Conn, query: LiteralString, params: dict[str, Any]
) -> Cursor[dict[str, Any]]:
    """Run a statement of the queue's housekeeping, planned for the table as it is now, never
    prepared. psycopg prepares a statement that runs often, and PostgreSQL may then keep one
    generic plan for it, made when the table was small: for the statements that take a list
    of ids (group commit, heartbeat) such a plan scanned the whole table once per id, and once
    10,000 tasks were queued a group commit took 70-840 ms instead of under 1 ms. Planning
    costs some 0.1-0.2 ms, paid once per batch or group here; the statements run once per task
    (a claim by id, an insert) keep their prepared plans, which are index look-ups whatever
    the table's size."""
    return conn.execute(query, params, prepare=False)


def claims_connection(url: str) -> Conn:
    """A connection for claims and sweeps: commits without waiting for the WAL flush (a claim
    that a database crash loses is recovered like any lost claim), and plans claims as an
    ordered walk of the fresh-task index (queries.CLAIMS_SESSION)."""
    return connect(url, autocommit=True, durable=False, session=queries.CLAIMS_SESSION)


def claim_task(conn: Conn, task_id: int, worker: str, types: list[str]) -> Task | None:
    """Claim one task by id; None when it is not fresh (any more), not due yet (backoff), not
    of these types, or not this service's to run (no owner in its data)."""
    row = conn.execute(
        queries.CLAIM_BY_ID, {"id": task_id, "worker": worker, "types": types}
    ).fetchone()
    return None if row is None else Task.model_validate(row)


def claim_batch(conn: Conn, worker: str, types: list[str], limit: int) -> list[Task]:
    """Claim up to `limit` of the oldest claimable tasks of these types (see claim_task)."""
    rows = _planned_now(
        conn, queries.CLAIM_BATCH, {"worker": worker, "types": types, "limit": limit}
    ).fetchall()
    return sorted((Task.model_validate(row) for row in rows), key=lambda t: t.id)


def heartbeat(
    conn: Conn, worker: str, attempts: dict[int, int], progress: dict[int, Any]
) -> set[int]:
    """Refresh the lease of these attempts (task id → attempt) and store the progress given for
    them (new progress, which also moves their `updated_on`); return the ids this worker's
    attempts still own. Never waits for a row lock."""
    reports = [{"task_id": tid, "progress": p} for tid, p in progress.items() if p is not None]
    rows = _planned_now(
        conn,
        queries.HEARTBEAT,
        {
            "ids": list(attempts),
            "attempts": list(attempts.values()),
            "worker": worker,
            "progress": Jsonb(reports),
            "progressed": [r["task_id"] for r in reports],
        },
    ).fetchall()
    return {int(row["id"]) for row in rows}


def finish_task(
    conn: Conn,
    task_id: int,
    worker: str,
    result: dict[str, Any] | None,
    attempt: int | None = None,
) -> bool:
    """Mark success and store the result; False (nothing changed) if the worker lost the task.
    `attempt` names the claim (its `attempts` value); None accepts any attempt of the worker."""
    return task_id in finish_tasks(conn, worker, {task_id: result}, {task_id: attempt})


def finish_tasks(
    conn: Conn,
    worker: str,
    results: dict[int, dict[str, Any] | None],
    attempts: dict[int, int | None] | None = None,
) -> set[int]:
    """Mark these tasks a success in one statement; return the ids this worker still owned."""
    stored = [
        {"task_id": tid, "result": bounded_result(result)}
        for tid, result in results.items()
        if result is not None
    ]
    named = attempts or {}
    rows = _planned_now(
        conn,
        queries.FINISH_TASKS,
        {
            "ids": list(results),
            "attempts": [named.get(tid) for tid in results],
            "worker": worker,
            "results": Jsonb(stored),
        },
    ).fetchall()
    return {int(row["id"]) for row in rows}


def lock_owned(conn: Conn, worker: str, attempts: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Lock, for the rest of the transaction, the tasks these (task id, attempt) pairs still
    own; return those pairs."""
    rows = _planned_now(
        conn,
        queries.LOCK_OWNED,
        {"ids": [a[0] for a in attempts], "attempts": [a[1] for a in attempts], "worker": worker},
    ).fetchall()
    return {(int(row["id"]), int(row["attempts"])) for row in rows}


def fail_task(
    conn: Conn,
    task_id: int,
    worker: str,
    error: str,
    result: dict[str, Any] | None = None,
    attempt: int | None = None,
) -> bool:
    """Mark failure with a readable error; False (nothing changed) if the worker lost the task."""
    error = bounded_error(error)
    params = {"id": task_id, "worker": worker, "error": error, "attempt": attempt}
    if conn.execute(queries.FAIL_TASK, params).fetchone() is None:
        return False
    if result is not None:
        stored = bounded_result(result, error)
        conn.execute(queries.STORE_RESULT, {"id": task_id, "result": Jsonb(stored)})
    return True


def release_task(conn: Conn, task_id: int, worker: str, attempt: int | None = None) -> bool:
    """Give a started task back (fresh, announced again), e.g. on shutdown."""
    params = {"id": task_id, "worker": worker, "attempt": attempt}
    return conn.execute(queries.RELEASE_TASK, params).fetchone() is not None


@dataclass(frozen=True)
class Requeued:
    status: str  # "fresh" (will run again) or "failure" (attempts used up)
    run_after: datetime | None


def requeue_after_error(
    conn: Conn,
    task_id: int,
    worker: str,
    max_attempts: int,
    error: str,
    attempt: int | None = None,
    delay: RetryDelay = DEFAULT_DELAY,
) -> Requeued | None:
    """Back to fresh, due after a backoff, while attempts remain, else failure with `error`;
    None if the worker lost the task."""
    row = conn.execute(
        queries.REQUEUE_AFTER_ERROR,
        {
            "id": task_id,
            "worker": worker,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "error": error,
            **delay.params(),
        },
    ).fetchone()
    return None if row is None else Requeued(str(row["status"]), row["run_after"])


def sweep(conn: Conn, types: list[str], limit: int = 100) -> list[tuple[int, str]]:
    rows = _planned_now(conn, queries.SWEEP_FRESH, {"types": types, "limit": limit}).fetchall()
    return [(int(row["id"]), str(row["type"])) for row in rows]


@dataclass(frozen=True)
class Reaped:
    requeued: list[int]
    failed: list[int]


def reap(
    conn: Conn,
    lease_seconds: float,
    max_attempts: int,
    types: list[str],
    delay: RetryDelay = DEFAULT_DELAY,
) -> Reaped:
    """This service's tasks of these types whose worker was lost: back to fresh (due after a
    backoff) while attempts remain, else failure."""
    rows = _planned_now(
        conn,
        queries.REAP_LOST,
        {
            "lease": lease_seconds,
            "max_attempts": max_attempts,
            "types": types,
            **delay.params(),
        },
    ).fetchall()
    return Reaped(
        requeued=sorted(int(r["id"]) for r in rows if r["status"] == "fresh"),
        failed=sorted(int(r["id"]) for r in rows if r["status"] == "failure"),
    )


# --- exports ---------------------------------------------------------------------------------


@contextmanager
def export_reads(conn: Conn, snapshot: bool) -> Iterator[None]:
    """How an export reads (queries.START_EXPORT). With `snapshot`, in one REPEATABLE READ
    transaction committed at the block's end: a report's summary and its book list, and the
    rows a server-side cursor hands over, agree even while the owner edits books. The level
    rides on psycopg's BEGIN, not on a statement of its own (a pipeline to save that round trip
    polled the socket more often than the round trip cost). Without, each statement commits on
    its own: for an export whose rows come from one COPY, which is its own snapshot; the count
    read before it is only the progress total. No BEGIN, no COMMIT: two round trips and their
    thread switches fewer per export. Either way the connection is back as it was before the
    pool has it again."""
    if snapshot:
        level = conn.isolation_level
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():
                yield
        finally:
            if not conn.broken:  # a broken one is dropped by the pool; its error must go through
                conn.isolation_level = level
        return
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.broken:
            conn.autocommit = False


def start_export(conn: Conn, fmt: str, owner_id: int) -> tuple[int, int]:
    """In export_reads: (reserved export id, number of books); OwnerNotAUser when BookLogr has
    no such user."""
    row = conn.execute(queries.START_EXPORT, {"owner": owner_id}).fetchone()
    assert row is not None
    if not row["owner_is_user"]:
        raise OwnerNotAUser(owner_id)
    return int(row["id"]), int(row["books"])


def record_export(
    conn: Conn, fmt: str, export_id: int, filename: str, owner_id: int, task_id: int
) -> None:
    """The export's row, and its line in BookLogr's `files` (which lists it in the web app)."""
    conn.execute(
        queries.INSERT_EXPORT,
        {
            "format": fmt,
            "id": export_id,
            "filename": filename,
            "owner": owner_id,
            "task_id": task_id,
        },
    )


def get_export(conn: Conn, fmt: str, export_id: int, owner_id: int) -> ExportRecord:
    row = conn.execute(
        queries.GET_OWN_EXPORT, {"format": fmt, "id": export_id, "owner": owner_id}
    ).fetchone()
    if row is None:
        raise TaskNotFound(export_id)
    return ExportRecord.model_validate(row)


def list_exports(conn: Conn, owner_id: int, limit: int = 100) -> list[ExportRecord]:
    rows = conn.execute(queries.LIST_OWN_EXPORTS, {"owner": owner_id, "limit": limit}).fetchall()
    return [ExportRecord.model_validate(row) for row in rows]


# --- retention -------------------------------------------------------------------------------

RETENTION_LOCK_ID = 0x626F6F6B726574  # "bookret"


@dataclass(frozen=True)
class Expired:
    tasks: int
    export_files: list[str]
    upload_files: list[str] = field(default_factory=list)  # uploads named by deleted tasks


def expire(
    conn: Conn,
    task_age_seconds: float,
    export_age_seconds: float,
    keep_exports: int,
    types: list[str],
    failed_upload_age_seconds: float | None = None,
    window_seconds: float = 3600.0,
) -> Expired | None:
    """Delete old finished tasks (of these types, that this service ran) and old exports' rows,
    in the caller's transaction; with `failed_upload_age_seconds`, also name the uploads of
    imports that failed between that age and `window_seconds` more ago.

    Returns the files of the deleted export rows, for the caller to delete *after* commit (a
    crash in between leaves a file without a row, never a row without its file); None if another
    listener is doing retention right now.
    """
    locked = conn.execute(queries.TRY_RETENTION_LOCK, {"lock": RETENTION_LOCK_ID}).fetchone()
    if not locked or not locked["locked"]:
        return None
    rows = conn.execute(
        queries.EXPIRE_EXPORTS, {"keep": keep_exports, "age": export_age_seconds}
    ).fetchall()
    files = [str(row["filename"]) for row in rows]
    deleted = conn.execute(
        queries.DELETE_OLD_TASKS, {"age": task_age_seconds, "limit": 10_000, "types": types}
    ).fetchall()
    failed = []
    if failed_upload_age_seconds is not None:
        failed = conn.execute(
            queries.FAILED_UPLOADS_DUE,
            {
                "age": failed_upload_age_seconds,
                "window": window_seconds,
                "limit": 10_000,
                "types": types,
            },
        ).fetchall()
    uploads = [upload_named_in(row["data"], row["created_by"]) for row in [*deleted, *failed]]
    return Expired(tasks=len(deleted), export_files=files, upload_files=[u for u in uploads if u])


# --- the `queue` command -----------------------------------------------------------------------


def queue_counts(conn: Conn) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(queries.QUEUE_COUNTS).fetchall()]


def oldest_tasks(conn: Conn, status: str, limit: int = 5) -> list[Task]:
    rows = conn.execute(queries.QUEUE_OLDEST, {"status": status, "limit": limit}).fetchall()
    return [Task.model_validate(row) for row in rows]


# --- the per-user cap on unfinished tasks ----------------------------------------------------


def create_task_under_cap(
    conn: Conn, task_type: str, data: str, created_by: int, cap: int
) -> Task | None:
    """Insert a fresh task unless `created_by` already has `cap` unfinished (fresh or started)
    ones; None then, with nothing stored. Safe against parallel creates of the same user. One
    statement: on an autocommit connection it is committed when this returns."""
    row = conn.execute(
        queries.INSERT_TASK_UNDER_CAP,
        {"type": task_type, "data": data, "owner": created_by, "cap": cap},
    ).fetchone()
    return None if row is None else Task.model_validate(row)


def has_room_under_cap(conn: Conn, owner_id: int, cap: int) -> bool:
    """Whether `owner_id` has fewer than `cap` unfinished tasks now."""
    row = conn.execute(queries.HAS_ROOM_UNDER_CAP, {"owner": owner_id, "cap": cap}).fetchone()
    return bool(row and row["room"])
