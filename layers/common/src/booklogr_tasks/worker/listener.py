"""The listener: LISTEN task_created, claim or invoke, and keep the queue healthy.

NOTIFY is a wake-up hint, not the queue. On start, after every reconnect and on a timer the
listener also looks for fresh tasks, so a missed notification delays a task by at most one sweep
interval. It also reaps tasks of lost workers, and pings its own connection so that a half-open
socket is noticed. The loop has two connections of its own: one that only listens, and one for
claims, sweeps and reaping, which commits without waiting for the WAL flush (a claim that a
database crash loses is recovered like any lost claim). Jobs use the pool.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import PoolTimeout

from booklogr_tasks.core.errors import SchemaOutOfDate
from booklogr_tasks.core.models import Task
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.migrate import check_schema
from booklogr_tasks.db.pool import Conn, connect
from booklogr_tasks.worker.invokers import Invoker, LocalInvoker, RemoteInvoker
from booklogr_tasks.worker.maintenance import discard_files_of, run_retention
from booklogr_tasks.worker.scheduler import start_scheduler

CHANNEL = "task_created"
# A claims connection that carried a task's data larger than this is replaced (ClaimsConnection).
RECYCLE_AFTER_BYTES = 1 << 20
# Enough to wake a lambda per fresh task without reading the whole table on each wake-up.
INVOKE_SCAN_LIMIT = 200


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter."""

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Timer:
    every: float
    due: float = field(default=0.0)

    def fire(self, now: float) -> bool:
        if now >= self.due:
            self.due = now + self.every
            return True
        return False

    def remaining(self, now: float) -> float:
        return max(0.0, self.due - now)


class ClaimsConnection:
    """The loop's connection for claims, sweeps and reaping (tasks.claims_connection). It is
    replaced after it carried a large task: libpq keeps a connection's buffers as large as the
    largest message it ever carried, which kept a listener tens of MB above its idle size."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = tasks.claims_connection(url)

    def renew(self) -> None:
        old, self.conn = self.conn, tasks.claims_connection(self.url)
        old.close()

    def __enter__(self) -> ClaimsConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


class Listener:
    def __init__(self, settings: Settings, types: list[str], worker: str, invoker: Invoker) -> None:
        self.settings = settings
        self.types = types
        self.worker = worker
        self.invoker = invoker
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._maybe_more = True
        # Task ids announced since the last dispatch while no backlog was known.
        self._announced: list[str] | None = None
        self._wake_pending = False
        self._invoked_at: dict[int, float] = {}
        self.sweep_timer = Timer(settings.task_sweep_seconds)
        self.reap_timer = Timer(max(0.5, settings.task_lease_seconds / 4))
        self.retention_timer = Timer(settings.retention_interval_seconds)
        self.backoff = Backoff()
        self._connected: bool | None = None

    # --- called from other threads -----------------------------------------------------------

    def wake(self) -> None:
        """Make the loop look for work now (a job finished, or a stop was requested)."""
        if self._wake_pending:  # one byte in the pipe is enough
            return
        self._wake_pending = True
        # A full pipe means the loop is going to wake anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake()

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until asked to stop; then finish or release running jobs. Returns 0."""
        logger.info("listener starting", extra={"worker": self.worker, "types": self.types})
        stop_scheduler = start_scheduler(self.settings, self.stopping)
        try:
            while not self.stopping.is_set():
                try:
                    url = self.settings.database_url
                    with connect(url, autocommit=True) as conn, ClaimsConnection(url) as claims:
                        self._serve(conn, claims)
                except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                    self._set_connected(False, str(exc))
                    self.stopping.wait(self.backoff.next_delay())
                except SchemaOutOfDate:
                    raise
                except Exception:
                    # A bug in one round must not stop the queue: log it, start a clean round.
                    logger.exception("listener round failed; restarting it")
                    self._connected = None
                    self.stopping.wait(self.backoff.next_delay())
        finally:
            stop_scheduler()
            logger.info("listener stopping", extra={"worker": self.worker})
            self.invoker.shutdown(self.settings.shutdown_grace_seconds)
            os.close(self._wake_r)
            os.close(self._wake_w)
            logger.info("listener stopped", extra={"worker": self.worker})
        return 0

    def _serve(self, conn: Conn, claims: ClaimsConnection) -> None:
        check_schema(conn)
        conn.execute(f"LISTEN {CHANNEL}")
        self._set_connected(True)
        self.backoff.reset()
        # Whatever was announced while we were away is found by this first sweep.
        self._maybe_more = True
        self._housekeeping(conn, claims.conn, time.monotonic(), force=True)
        self._dispatch(claims)
        while not self.stopping.is_set():
            now = time.monotonic()
            timeout = min(self.sweep_timer.remaining(now), self.reap_timer.remaining(now))
            readable, _, _ = select.select([conn.fileno(), self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                self._drain_wake_pipe()
            announced = [n.payload for n in conn.notifies(timeout=0)]
            if announced:
                # With no backlog known, the announced ids are all there is to claim: each is
                # claimed by its id, the quickest claim there is. Otherwise claim in batches.
                self._announced = None if self._maybe_more else announced
                self._maybe_more = True
            self._housekeeping(conn, claims.conn, time.monotonic())
            if not self.stopping.is_set():
                self._dispatch(claims)

    def _housekeeping(self, conn: Conn, claims: Conn, now: float, force: bool = False) -> None:
        if self.sweep_timer.fire(now) or force:
            # A round trip on the listening connection proves it is alive, not just idle.
            conn.execute("SELECT 1")
            self._maybe_more = True
        if self.reap_timer.fire(now) or force:
            reaped = tasks.reap(
                claims,
                self.settings.task_lease_seconds,
                self.settings.task_max_attempts,
                self.types,
                self.settings.retry_delay,
            )
            if reaped.requeued or reaped.failed:
                logger.warning(
                    "reaped tasks of lost workers",
                    extra={"requeued": reaped.requeued, "failed": reaped.failed},
                )
            discard_files_of(self.settings, reaped.failed)
        if self.retention_timer.fire(now):
            run_retention(self.settings, self.types)

    def _dispatch(self, claims: ClaimsConnection) -> None:
        if not self._maybe_more:
            return
        if isinstance(self.invoker, LocalInvoker):
            self._claim_and_start(self.invoker, claims)
        else:
            self._invoke_fresh(self.invoker, claims.conn)

    def _claim_and_start(self, invoker: LocalInvoker, claims: ClaimsConnection) -> None:
        announced, self._announced = self._announced, None
        if announced and self._claim_announced(invoker, claims, announced):
            self._maybe_more = False
            return
        while not self.stopping.is_set():
            free = invoker.free_slots()
            if free < invoker.claim_threshold():
                return  # _maybe_more stays set: a finishing job wakes us to claim more
            claimed = tasks.claim_batch(claims.conn, self.worker, self.types, free)
            self._start(invoker, claims, claimed)
            if len(claimed) < free:
                self._maybe_more = False
                return

    def _claim_announced(
        self, invoker: LocalInvoker, claims: ClaimsConnection, announced: list[str]
    ) -> bool:
        """Claim the announced tasks by id; False (nothing claimed) when they do not all fit in
        the free slots or an announcement is not a task id."""
        if not all(payload.isdigit() for payload in announced):
            return False
        if len(announced) > invoker.free_slots():
            return False
        claimed = [
            task
            for payload in announced
            if (task := tasks.claim_task(claims.conn, int(payload), self.worker, self.types))
        ]
        self._start(invoker, claims, claimed)
        return True

    @staticmethod
    def _start(invoker: LocalInvoker, claims: ClaimsConnection, claimed: list[Task]) -> None:
        for task in claimed:
            invoker.start(task)
        if any(len(task.data) > RECYCLE_AFTER_BYTES for task in claimed):
            claims.renew()

    def _invoke_fresh(self, invoker: RemoteInvoker, claims: Conn) -> None:
        now = time.monotonic()
        lease = self.settings.task_lease_seconds
        self._invoked_at = {tid: at for tid, at in self._invoked_at.items() if now - at < lease}
        fresh = tasks.sweep(claims, self.types, INVOKE_SCAN_LIMIT)
        for task_id, task_type in fresh:
            # An invoked task stays fresh until its function claims it; don't invoke it again
            # before a lease has passed.
            if task_id in self._invoked_at:
                continue
            if invoker.invoke(task_id, task_type):
                self._invoked_at[task_id] = now
        self._maybe_more = len(fresh) == INVOKE_SCAN_LIMIT

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        # Cleared after draining: a wake() from now on writes a byte again, and one that came
        # in between is served by the dispatch that follows.
        self._wake_pending = False

    def _set_connected(self, connected: bool, error: str | None = None) -> None:
        """Log each change of connection state once, not on every retry."""
        if self._connected == connected:
            return
        self._connected = connected
        if connected:
            logger.info("listening", extra={"worker": self.worker, "channel": CHANNEL})
        else:
            logger.warning(
                "database unreachable; reconnecting with backoff",
                extra={"worker": self.worker, "error": error},
            )
