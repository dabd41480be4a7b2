"""run_task: claim → run the job of the task's type → finish or fail.

The one entry point behind every way a task runs: the in-process invoker's threads and each
AWS Lambda handler call it. Running it for a task that is no longer fresh does nothing, so a
duplicated invocation is harmless.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from booklogr_tasks.core.errors import TaskLost
from booklogr_tasks.core.models import Task
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import get_pool, pooled
from booklogr_tasks.jobs import JobContext, JobError, Outcome, get_spec, known_types
from booklogr_tasks.worker.finisher import Committed, Done, Finished, Finisher
from booklogr_tasks.worker.lease import Lease, Leases


class RunOutcome(StrEnum):
    """What became of one run of a task (not a task's status, though some share a name)."""

    SUCCESS = "success"  # recorded a success
    FAILURE = "failure"  # recorded a failure (the job's, or attempts used up)
    SKIPPED = "skipped"  # not claimable when asked to run it (not fresh, not due, not ours)
    LOST = "lost"  # another attempt owns the task now; this one recorded nothing
    REQUEUED = "requeued"  # given back after a database error; runs again after a backoff
    RELEASED = "released"  # given back unrun, or stopped, because this process shuts down
    COMMITTING = "committing"  # a success waiting for its group commit (worker/finisher.py)
    # The outcome could not be recorded (the database is away): the lease expires and the
    # reaper gives the task another attempt.
    UNRECORDED = "unrecorded"


def worker_identity(nickname: str | None) -> str:
    """`nickname:UUID`, or the UUID alone when no nickname is set."""
    unique = str(uuid.uuid4())
    return f"{nickname}:{unique}" if nickname else unique


def describe_invalid(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "data"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


# What the user reads when a task failed for a reason that is ours, not theirs. The details
# (exception, stack, paths) are in the log under the task id.
INTERNAL_ERROR = (
    "The task failed because of an internal error in the service (logged with task id {id}). "
    "Retry the task; if it fails again, report it to the administrator."
)
GAVE_UP = {
    "connection": (
        "The task was given up after {n} attempts; the last one lost its database connection. "
        "Retry the task when the database is reachable again."
    ),
    "timeout": (
        "The task was given up after {n} attempts; the last one took longer than the database "
        "allows (statement timeout). Retry the task later."
    ),
}

# SQLSTATEs of a statement cancelled for taking too long: statement_timeout (57014) and
# lock_timeout (55P03).
TIMEOUT_STATES = frozenset({"57014", "55P03"})


def failure_kind(exc: BaseException) -> str:
    """ "timeout" or "connection" for a database error worth another attempt."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate in TIMEOUT_STATES:
        return "timeout"
    return "connection"


class Runner:
    """Runs tasks for one worker identity; one per process is enough.

    Each attempt is named by its claim: (worker, attempts after the claim). Every statement that
    records an outcome names it, so an attempt that lost its task (even to a newer attempt of
    the same worker in the same process) changes nothing; and a newer attempt at a task waits
    until the older one, told that it lost, has stopped.
    """

    def __init__(
        self, settings: Settings, worker: str, pool_size: int = 4, group_commit: bool = False
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.database_url = settings.database_url
        get_pool(self.database_url, max_size=pool_size)
        self.leases = Leases(self.database_url, worker, settings.heartbeat_seconds)
        self.finisher = Finisher(self.database_url, worker) if group_commit else None

    def close(self) -> None:
        """Record the successes still waiting for their group commit; stop the heartbeat."""
        if self.finisher is not None:
            self.finisher.close()
        self.leases.stop()

    def run_by_id(self, task_id: int, types: list[str] | None = None) -> RunOutcome:
        """Claim the task if it is still claimable, then run it; SKIPPED when it is not."""
        with pooled(self.database_url) as conn:
            task = tasks.claim_task(conn, task_id, self.worker, types or known_types())
        if task is None:
            logger.info("task not fresh, skipped", extra={"task_id": task_id})
            return RunOutcome.SKIPPED
        return self.execute(task)

    def hold(self, task: Task) -> Lease:
        """Start beating for a claimed task: from its claim on, however long it waits for a
        thread, no reaper takes it from a live process."""
        return self.leases.hold(task.id, task.attempts)

    def execute(self, task: Task, lease: Lease | None = None) -> RunOutcome:
        """Run a task this worker has claimed (its lease held since the claim, or from now).
        The lease ends when this returns, unless a group commit took it over."""
        with lease if lease is not None else self.hold(task) as held:
            for old in held.wait_for_earlier(self.settings.heartbeat_seconds):
                logger.warning(
                    "waited for an earlier attempt at this task to stop",
                    extra=self._fields(task, earlier_attempt=old.attempt),
                )
            if held.lost.is_set():
                # Lost while it waited for a thread: shutting down, it is given back unrun.
                return self._lost(task, held, time.perf_counter())
            # DEBUG: at INFO (the default) a task writes one line, its outcome with its
            # duration; a second line per task would be a large part of a quick task's cost.
            self._log("started", task, debug=True)
            return self._run_job(task, held, time.perf_counter())

    def _run_job(self, task: Task, lease: Lease, started: float) -> RunOutcome:
        spec = get_spec(task.type)
        if spec is None:
            return self._fail(
                task, lease, f"no job is registered for task type {task.type!r}", started
            )
        try:
            payload = spec.parse(task.data)
        except ValidationError as exc:
            return self._fail(task, lease, f"invalid task data: {describe_invalid(exc)}", started)
        if payload.owner_id != task.created_by:
            return self._fail(
                task,
                lease,
                "invalid task data: owner_id must be the user who created the task",
                started,
            )
        ctx = JobContext(task=task, worker=self.worker, settings=self.settings, lease=lease)
        try:
            outcome = spec.run(ctx, payload)
            lease.check()
            lease.finishing()
            if self.finisher is not None and outcome.group_committable:
                lease.hand_over()
                self.finisher.submit(
                    lease,
                    outcome.result,
                    outcome.publish,
                    self._on_group_commit(task, lease, outcome, started),
                )
                return RunOutcome.COMMITTING
            published = False
            try:
                with pooled(self.database_url) as conn:
                    # Publish first: a long publish (an import's load) must not hold the task
                    # row's lock, which would stall the heartbeat and the reaper's view of it.
                    if outcome.publish is not None:
                        outcome.publish(conn)
                    if not tasks.finish_task(
                        conn, task.id, self.worker, outcome.result, attempt=task.attempts
                    ):
                        raise TaskLost(f"task {task.id} was taken away from this worker")
                    published = True
            except psycopg.OperationalError as exc:
                # Only a connection that broke after the publish step (during COMMIT) may have
                # recorded the success: then the file is kept, and if the task was not finished
                # a later attempt removes it. Before that, or on a timeout (the transaction was
                # rolled back), nothing was recorded: discard now, so no file is left held.
                keep = published and failure_kind(exc) == "connection"
                if not keep and outcome.discard is not None:
                    outcome.discard()
                raise
            except BaseException:
                if outcome.discard is not None:
                    outcome.discard()
                raise
            if outcome.committed is not None:
                outcome.committed()
        except TaskLost:
            return self._lost(task, lease, started)
        except JobError as exc:
            return self._fail(task, lease, exc.message, started, exc.result)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Not the task's fault: give it back for another attempt, after a backoff.
            kind = failure_kind(exc)
            logger.warning(
                "database %s during task" % ("timeout" if kind == "timeout" else "error"),
                extra=self._fields(task, error=str(exc), error_type=type(exc).__name__),
            )
            return self._requeue(task, kind, started)
        except Exception:
            logger.exception("task crashed", extra=self._fields(task))
            return self._fail(task, lease, INTERNAL_ERROR.format(id=task.id), started)
        self._log(RunOutcome.SUCCESS, task, started)
        return RunOutcome.SUCCESS

    def _on_group_commit(self, task: Task, lease: Lease, outcome: Outcome, started: float) -> Done:
        def done(finished: Finished) -> None:
            if isinstance(finished, Exception):
                if outcome.discard is not None:
                    outcome.discard()
                logger.error(
                    "publishing the task's result failed",
                    exc_info=finished,
                    extra=self._fields(task),
                )
                self._fail(task, lease, INTERNAL_ERROR.format(id=task.id), started)
            elif finished is Committed.LOST and outcome.discard is not None:
                outcome.discard()
            elif finished is Committed.SUCCESS and outcome.committed is not None:
                outcome.committed()
            # UNKNOWN: the success may have been recorded, so the file is kept; if it was
            # not, the lease expires and the next attempt deletes what this one left. The
            # group commit ends the lease after this.
            if not isinstance(finished, Exception):
                self._log(finished, task, started)

        return done

    def _fail(
        self,
        task: Task,
        lease: Lease,
        error: str,
        started: float,
        result: dict[str, Any] | None = None,
    ) -> RunOutcome:
        lease.finishing()
        try:
            with pooled(self.database_url) as conn:
                recorded = tasks.fail_task(
                    conn, task.id, self.worker, error, result, attempt=task.attempts
                )
        except (psycopg.OperationalError, PoolTimeout):
            logger.warning(
                "could not record failure; the lease will expire", extra=self._fields(task)
            )
            return RunOutcome.UNRECORDED
        if not recorded:
            return self._lost(task, lease, started)
        self._log("failure", task, started, error=error)
        return RunOutcome.FAILURE

    def _requeue(self, task: Task, kind: str, started: float) -> RunOutcome:
        try:
            with pooled(self.database_url) as conn:
                requeued = tasks.requeue_after_error(
                    conn,
                    task.id,
                    self.worker,
                    self.settings.task_max_attempts,
                    GAVE_UP[kind].format(n=task.attempts),
                    attempt=task.attempts,
                    delay=self.settings.retry_delay,
                )
        except (psycopg.OperationalError, PoolTimeout):
            # Still unreachable: the lease expires and a reaper gives the task to another worker.
            logger.warning("could not requeue; the lease will expire", extra=self._fields(task))
            return RunOutcome.UNRECORDED
        if requeued is None:
            self._log(RunOutcome.LOST, task, started)
            return RunOutcome.LOST
        run_after = requeued.run_after.isoformat() if requeued.run_after else None
        outcome = RunOutcome.REQUEUED if requeued.status == "fresh" else RunOutcome.FAILURE
        self._log(outcome, task, started, reason=kind, run_after=run_after)
        return outcome

    def _lost(self, task: Task, lease: Lease, started: float) -> RunOutcome:
        lease.finishing()
        if lease.shutting_down:
            with pooled(self.database_url) as conn:
                released = tasks.release_task(conn, task.id, self.worker, attempt=task.attempts)
            outcome = RunOutcome.RELEASED if released else RunOutcome.LOST
        else:
            outcome = RunOutcome.LOST
        self._log(outcome, task, started)
        return outcome

    def _fields(self, task: Task, **extra: Any) -> dict[str, Any]:
        return {
            "task_id": task.id,
            "task_type": task.type,
            "worker": self.worker,
            "attempt": task.attempts,
            **extra,
        }

    def _log(
        self,
        transition: str,
        task: Task,
        started: float | None = None,
        debug: bool = False,
        **extra: Any,
    ) -> None:
        write = logger.debug if debug else logger.info
        if debug and logger.log_level > logging.DEBUG:
            return  # not even the fields
        fields = self._fields(task, transition=transition, **extra)
        if started is not None:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        write(f"task {transition}", extra=fields)


_default_runner: Runner | None = None
_default_lock = threading.Lock()


def default_runner() -> Runner:
    """The process's runner (a Lambda container keeps one between invocations)."""
    global _default_runner
    with _default_lock:
        if _default_runner is None:
            settings = get_settings()
            nickname = settings.worker_nickname or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
            _default_runner = Runner(settings, worker_identity(nickname))
        return _default_runner


def run_task(task_id: int) -> RunOutcome:
    """Claim and run one task with the process's runner: what a Lambda handler calls."""
    return default_runner().run_by_id(task_id)
