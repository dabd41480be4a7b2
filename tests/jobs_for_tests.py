"""Job types that only tests register (BOOKLOGR_TASKS_JOB_MODULES=tests.jobs_for_tests)."""

from __future__ import annotations

import threading
import time

from booklogr_tasks.core.models import OwnerPayload
from booklogr_tasks.db.pool import Conn, pooled
from booklogr_tasks.jobs import JobContext, JobSpec, Outcome, register
from pydantic import Field


class SleepPayload(OwnerPayload):
    seconds: float = Field(ge=0, le=600)


def sleep(ctx: JobContext, payload: SleepPayload) -> Outcome:
    """Sleeps in small steps, giving the task up as soon as the lease is lost."""
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        ctx.check_lost()
        time.sleep(0.02)
    return Outcome(result={"slept": payload.seconds})


def noop(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    return Outcome(result=None)


def slow_commit(ctx: JobContext, payload: SleepPayload) -> Outcome:
    """Nothing to do, then a success transaction that holds the task's row for `seconds`
    (as an import's bulk load does)."""

    def publish(conn: Conn) -> None:
        conn.execute("SELECT pg_sleep(%s)", (payload.seconds,))

    return Outcome(result={"held_row_for": payload.seconds}, publish=publish)


def crash(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    """A bug: an exception whose text has a server path in it."""
    raise FileNotFoundError(2, "No such file or directory", "/srv/secret/exports/1/x.csv.part")


def db_timeout(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    """A statement that runs into the database's statement_timeout every time."""
    with pooled(ctx.settings.database_url) as conn:
        conn.execute("SET LOCAL statement_timeout = 50")
        conn.execute("SELECT pg_sleep(5)")
    return Outcome()


def db_disconnect(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    """Loses its database connection every time (its backend is terminated under it)."""
    with pooled(ctx.settings.database_url) as conn:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    return Outcome()


# (task id, attempt, "start" | "stop") in the order the attempts of test_attempts did them.
ATTEMPT_EVENTS: list[tuple[int, int, str]] = []
_events_lock = threading.Lock()


def _event(ctx: JobContext, what: str) -> None:
    with _events_lock:
        ATTEMPT_EVENTS.append((ctx.task.id, ctx.task.attempts, what))


def attempts(ctx: JobContext, payload: SleepPayload) -> Outcome:
    """Records when each attempt starts and stops; runs `seconds` unless it loses the task."""
    _event(ctx, "start")
    try:
        return sleep(ctx, payload)
    finally:
        _event(ctx, "stop")


SPECS = [
    JobSpec(
        task_type="test_sleep", payload_model=SleepPayload, run=sleep, summary="test only: sleep"
    ),
    JobSpec(
        task_type="test_noop", payload_model=OwnerPayload, run=noop, summary="test only: nothing"
    ),
    JobSpec(
        task_type="test_slow_commit",
        payload_model=SleepPayload,
        run=slow_commit,
        summary="test only: a success transaction that holds the task's row",
    ),
    JobSpec(task_type="test_crash", payload_model=OwnerPayload, run=crash, summary="test only"),
    JobSpec(
        task_type="test_db_timeout", payload_model=OwnerPayload, run=db_timeout, summary="test only"
    ),
    JobSpec(
        task_type="test_db_disconnect",
        payload_model=OwnerPayload,
        run=db_disconnect,
        summary="test only",
    ),
    JobSpec(
        task_type="test_attempts", payload_model=SleepPayload, run=attempts, summary="test only"
    ),
]
for _spec in SPECS:
    register(_spec)
