"""run_task: claim → run the job of the task's type → finish or fail.

The one entry point behind every way a task runs: the in-process invoker's threads and each
AWS Lambda handler call it. Running it for a task that is no longer fresh does nothing, so a
duplicated invocation is harmless.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from booklogr_tasks.core.errors import TaskLost
from booklogr_tasks.core.lease import Lease
from booklogr_tasks.core.models import Task
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import get_pool, pooled
from booklogr_tasks.jobs import JobContext, JobError, get_spec, known_types
from booklogr_tasks.worker.finisher import Finisher
from booklogr_tasks.worker.leases import HeartbeatMonitor

# execute()'s status for a success that waits for its group commit.
FINISHING = "finishing"


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


class Runner:
    """Runs tasks for one worker identity; one per process is enough."""

    def __init__(
        self, settings: Settings, worker: str, pool_size: int = 4, group_commit: bool = False
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.database_url = settings.database_url
        get_pool(self.database_url, max_size=pool_size)
        self.monitor = HeartbeatMonitor(self.database_url, worker, settings.heartbeat_seconds)
        self.finisher = Finisher(self.database_url, worker) if group_commit else None

    def close(self) -> None:
        """Record the successes still waiting for their group commit; stop the heartbeat."""
        if self.finisher is not None:
            self.finisher.close()
        self.monitor.stop()

    def run_by_id(self, task_id: int, types: list[str] | None = None) -> str:
        """Claim the task if it is still fresh, then run it; "skipped" when it is not fresh."""
        with pooled(self.database_url) as conn:
            task = tasks.claim_task(conn, task_id, self.worker, types or known_types())
        if task is None:
            logger.info("task not fresh, skipped", extra={"task_id": task_id})
            return "skipped"
        return self.execute(task)

    def execute(self, task: Task) -> str:
        """Run a task this worker has claimed; returns the status it ended in."""
        self._log("started", task)
        started = time.perf_counter()
        lease = self.monitor.hold(task.id)
        status = "started"
        try:
            status = self._run_job(task, lease, started)
        finally:
            if status != FINISHING:  # a group commit drops the lease once it has committed
                self.monitor.drop(task.id)
        return status

    def _run_job(self, task: Task, lease: Lease, started: float) -> str:
        spec = get_spec(task.type)
        if spec is None:
            return self._fail(task, f"no job is registered for task type {task.type!r}", started)
        try:
            payload = spec.parse(task.data)
        except ValidationError as exc:
            return self._fail(task, f"invalid task data: {describe_invalid(exc)}", started)
        if payload.owner_id != task.created_by:
            return self._fail(
                task, "invalid task data: owner_id must be the user who created the task", started
            )
        ctx = JobContext(task=task, worker=self.worker, settings=self.settings, lease=lease)
        try:
            outcome = spec.run(ctx, payload)
            lease.check()
            if self.finisher is not None and outcome.publish is None:
                self.finisher.submit(task.id, outcome.result, self._on_group_commit(task, started))
                return FINISHING
            try:
                with pooled(self.database_url) as conn:
                    # Publish first: a long publish (an import's load) must not hold the task
                    # row's lock, which would stall every heartbeat of this worker.
                    if outcome.publish is not None:
                        outcome.publish(conn)
                    if not tasks.finish_task(conn, task.id, self.worker, outcome.result):
                        raise TaskLost(f"task {task.id} was taken away from this worker")
            except psycopg.OperationalError:
                # The connection broke, perhaps during COMMIT: the success may have been
                # recorded. Keep the file; if the task was not finished, its next attempt
                # deletes what this one left.
                raise
            except BaseException:
                if outcome.discard is not None:
                    outcome.discard()
                raise
            if outcome.committed is not None:
                outcome.committed()
        except TaskLost:
            return self._lost(task, lease.shutting_down, started)
        except JobError as exc:
            return self._fail(task, exc.message, started, exc.result)
        except psycopg.OperationalError as exc:
            # Not the task's fault: give it back for another attempt.
            logger.warning("database error during task", extra=self._fields(task, error=str(exc)))
            return self._requeue(task, f"database connection lost: {exc}".strip(), started)
        except Exception as exc:
            logger.exception("task crashed", extra=self._fields(task))
            return self._fail(task, f"internal error ({type(exc).__name__}): {exc}", started)
        self._log("success", task, started)
        return "success"

    def _on_group_commit(self, task: Task, started: float) -> Callable[[bool], None]:
        def done(recorded: bool) -> None:
            self.monitor.drop(task.id)
            self._log("success" if recorded else "lost", task, started)

        return done

    def _fail(
        self, task: Task, error: str, started: float, result: dict[str, Any] | None = None
    ) -> str:
        try:
            with pooled(self.database_url) as conn:
                recorded = tasks.fail_task(conn, task.id, self.worker, error, result)
        except psycopg.OperationalError:
            logger.warning(
                "could not record failure; the lease will expire", extra=self._fields(task)
            )
            return "started"
        if not recorded:
            return self._lost(task, False, started)
        self._log("failure", task, started, error=error)
        return "failure"

    def _requeue(self, task: Task, error: str, started: float) -> str:
        try:
            with pooled(self.database_url) as conn:
                status = tasks.requeue_after_error(
                    conn, task.id, self.worker, self.settings.task_max_attempts, error
                )
        except (psycopg.OperationalError, PoolTimeout):
            # Still unreachable: the lease expires and a reaper gives the task to another worker.
            logger.warning("could not requeue; the lease will expire", extra=self._fields(task))
            return "started"
        self._log(status or "lost", task, started, error=error)
        return status or "lost"

    def _lost(self, task: Task, shutting_down: bool, started: float) -> str:
        if shutting_down:
            with pooled(self.database_url) as conn:
                released = tasks.release_task(conn, task.id, self.worker)
            self._log("released" if released else "lost", task, started)
            return "fresh" if released else "lost"
        self._log("lost", task, started)
        return "lost"

    def _fields(self, task: Task, **extra: Any) -> dict[str, Any]:
        return {"task_id": task.id, "task_type": task.type, "worker": self.worker, **extra}

    def _log(self, transition: str, task: Task, started: float | None = None, **extra: Any) -> None:
        fields = self._fields(task, transition=transition, **extra)
        if started is not None:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        logger.info(f"task {transition}", extra=fields)


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


def run_task(task_id: int) -> str:
    """Claim and run one task with the process's runner: what a Lambda handler calls."""
    return default_runner().run_by_id(task_id)
