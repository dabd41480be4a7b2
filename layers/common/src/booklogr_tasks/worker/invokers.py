"""How a listener gets a task run: in this process (a bounded thread pool) or by AWS Lambda.

In-process, the listener claims tasks itself (in batches when work is waiting) and hands the
claimed tasks to the pool. With Lambda, the function claims: the listener only invokes it, so a
failed invocation leaves the task fresh for the next sweep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from booklogr_tasks.core.models import Task
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.worker.lease import Lease
from booklogr_tasks.worker.memory import after_job
from booklogr_tasks.worker.runner import Runner


@runtime_checkable
class LocalInvoker(Protocol):
    """Runs tasks the listener has claimed, in this process."""

    def free_slots(self) -> int: ...

    def claim_threshold(self) -> int:
        """How many free slots make a claim worth its round trip."""

    def start(self, task: Task) -> None: ...

    def shutdown(self, grace_seconds: float) -> None: ...


@runtime_checkable
class RemoteInvoker(Protocol):
    """Hands fresh task ids to something that claims them itself (a Lambda function)."""

    def invoke(self, task_id: int, task_type: str) -> bool:
        """False when it could not: the task stays fresh for the next sweep."""

    def shutdown(self, grace_seconds: float) -> None: ...


Invoker = LocalInvoker | RemoteInvoker


# Jobs quicker than this, on average, are claimed in batches while a backlog lasts.
QUICK_JOB_SECONDS = 0.05


class InProcessInvoker:
    def __init__(self, runner: Runner, concurrency: int) -> None:
        self.runner = runner
        self.concurrency = concurrency
        # The listener sets this to its wake(): a finished job may make room for a waiting one.
        self.on_done: Callable[[], None] = lambda: None
        self._threads = Threads(concurrency, "job")
        self._in_flight = 0
        # Start by assuming slow jobs, so the first tasks are never held back.
        self._typical_seconds = 1.0
        self._lock = threading.Condition()

    def free_slots(self) -> int:
        """How many tasks to claim now: one per idle thread, and while jobs are quick as many
        again to wait in line, so that a thread that finishes one finds the next without
        waiting for a claim's round trip (bench/throughput.py measures the difference). A
        waiting task's lease is held and beaten from its claim (start), so however long it
        waits, no reaper takes it."""
        with self._lock:
            return self._capacity() - self._in_flight

    def _capacity(self) -> int:
        quick = self._typical_seconds <= QUICK_JOB_SECONDS
        return 2 * self.concurrency if quick else self.concurrency

    def claim_threshold(self) -> int:
        """1 while jobs are slow or none runs: a free slot is filled at once. While a backlog of
        quick jobs is being worked off, wait until half the threads' worth is free, so one
        claim (and one commit) serves several tasks instead of one."""
        with self._lock:
            if self._in_flight == 0 or self._typical_seconds > QUICK_JOB_SECONDS:
                return 1
        return max(1, self.concurrency // 2)

    def start(self, task: Task) -> None:
        lease = self.runner.hold(task)
        with self._lock:
            self._in_flight += 1
        self._threads.submit(lambda: self._run(task, lease), task_id=task.id)

    def _run(self, task: Task, lease: Lease) -> None:
        started = time.monotonic()
        cpu_started = time.thread_time()
        try:
            self.runner.execute(task, lease)
        except Exception:  # execute records failures itself; this is the last line of defence
            logger.exception("job thread crashed", extra={"task_id": task.id})
        finally:
            took = time.monotonic() - started
            # Before the slot is freed: the next job in this thread starts from a trimmed heap.
            after_job(time.thread_time() - cpu_started)
            with self._lock:
                self._in_flight -= 1
                # Moving average of job durations (weight 1/8 on the newest).
                self._typical_seconds += (took - self._typical_seconds) / 8
                self._lock.notify_all()
            self.on_done()

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def shutdown(self, grace_seconds: float) -> None:
        """Let running jobs finish within the grace period, then give the rest back."""
        deadline = time.monotonic() + grace_seconds
        with self._lock:
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(timeout=max(0.0, deadline - time.monotonic()))
            unfinished = self._in_flight
        if unfinished:
            logger.info(
                "grace period over; releasing unfinished tasks", extra={"running": unfinished}
            )
            self.runner.leases.stop_for_shutdown()
        self._threads.shutdown()
        self.runner.close()
