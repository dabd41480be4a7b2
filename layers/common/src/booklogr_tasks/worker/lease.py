"""A held task's lease, from its claim to its finish: one Lease per claimed attempt, and one
Leases per process, whose thread beats every lease it holds in one statement.

A lease goes through its states (LeaseState) in this order, and only forward:
- HELD, from Leases.hold at the claim: beaten from then on, however long the task waits for a
  thread, so no reaper takes it from a live process;
- FINISHING (Lease.finishing): the attempt records its outcome. From now on the finish
  statement's guard (worker and attempt), not the heartbeat, decides whether the attempt still
  owns the task, so a beat never calls a task that has just finished lost;
- HANDED_OVER (Lease.hand_over): its success waits for the group commit (worker/finisher.py),
  which ends the lease once that commit is over;
- ENDED (Lease.end, after a finish or when the attempt is abandoned): no longer beaten; a newer
  attempt at the same task in this process, which waits for this one to end, may start.
Used as a context manager, a lease ends when the block is left, unless it was handed over.

Besides its state, a lease may be `lost`: the beat found the task owned by someone else, a newer
attempt at it in this process was claimed, or the process is shutting down (`shutting_down`: the
task is then given back rather than left to the reaper). The job sees that through check(),
between chunks, and stops, leaving nothing behind.

The beat never waits behind anything else: not for a pool connection (jobs may hold them all),
not for a row lock (a task's long success transaction holds its row; the statement skips locked
rows, see queries.HEARTBEAT), and a lock_timeout bounds it should anything else block it. It
moves the lease clock (`heartbeat_at`) of every lease, and `updated_on` only of the tasks whose
progress changed since the beat before.
"""

from __future__ import annotations

import contextlib
import threading
from enum import Enum
from typing import Any

import psycopg

from booklogr_tasks.core.errors import TaskLost
from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn, connect


class Flag:
    """Set once by one thread, read by others; nobody waits for it. Cheaper than a
    threading.Event (a Condition and a lock), which would be made for every task on the
    listener's claim path."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Signal(Flag):
    """A Flag that can also be waited for. The Event behind a wait is only made when somebody
    waits, which is rare (a newer attempt at the same task in the same process)."""

    __slots__ = ("_event",)
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._event: threading.Event | None = None

    def set(self) -> None:
        with self._lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class LeaseState(Enum):
    HELD = "held"
    FINISHING = "finishing"
    HANDED_OVER = "handed over"
    ENDED = "ended"


class Lease:
    """One claimed attempt's lease (see the module's docstring for its lifecycle)."""

    def __init__(
        self,
        task_id: int,
        attempt: int = 0,
        leases: Leases | None = None,
        earlier: list[Lease] | None = None,
    ) -> None:
        self.task_id = task_id
        # The claim this lease belongs to: the task's `attempts` right after that claim.
        self.attempt = attempt
        self.state = LeaseState.HELD
        self.lost = Flag()
        # Set with `lost` when this process asks the job to stop so it can exit.
        self.shutting_down = False
        self.progress: dict[str, Any] | None = None
        # Earlier attempts at the same task still running in this process when this one was
        # claimed: they have lost the task, and this attempt starts only once they have ended.
        self.earlier: list[Lease] = earlier or []
        self._leases = leases
        self._ended = Signal()
        self._beaten_progress: dict[str, Any] | None = None  # what the last beat stored

    # --- what the job sees -------------------------------------------------------------------

    def report_progress(self, done: int, total: int | None = None) -> None:
        """Cheap: kept in memory and written with the next heartbeat. A missing total keeps
        the one reported before."""
        if total is None and self.progress is not None:
            total = self.progress.get("total")
        self.progress = {"done": done, "total": total}

    def check(self) -> None:
        if self.lost.is_set():
            raise TaskLost(f"task {self.task_id} was taken away from this worker")

    # --- the lifecycle -------------------------------------------------------------------------

    def wait_for_earlier(self, patience: float) -> list[Lease]:
        """Wait until the earlier attempts at this task in this process have ended (they were
        told they lost it), so they cannot touch this attempt's files or rows. Returns those
        still running after `patience` seconds (the caller logs them), having waited for them
        too."""
        slow = [old for old in self.earlier if not old._ended.wait(patience)]
        for old in slow:
            old._ended.wait()
        self.earlier = []
        return slow

    def finishing(self) -> None:
        if self.state is LeaseState.HELD:
            self.state = LeaseState.FINISHING

    def hand_over(self) -> None:
        """Its success waits for the group commit, which ends the lease."""
        self.state = LeaseState.HANDED_OVER

    def end(self) -> None:
        """The attempt has ended (finished or abandoned): stop beating for it, and let a
        waiting attempt at the same task start. Ending twice is harmless."""
        if self.state is LeaseState.ENDED:
            return
        self.state = LeaseState.ENDED
        if self._leases is not None:
            self._leases._drop(self)
        self._ended.set()

    def stop_for_shutdown(self) -> None:
        self.shutting_down = True
        self.lost.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state is not LeaseState.HANDED_OVER:
            self.end()


class Leases:
    """The leases one worker identity holds in this process, and the thread that beats them."""

    def __init__(self, database_url: str, worker: str, interval: float) -> None:
        self.database_url = database_url
        self.worker = worker
        self.interval = interval
        # task id → attempt → lease. By task first: every hold looks up the task's earlier
        # attempts, which must not cost a scan of every lease when thousands of quick tasks
        # wait for their group commit.
        self._leases: dict[int, dict[int, Lease]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None

    def hold(self, task_id: int, attempt: int = 0) -> Lease:
        """Start beating for this attempt. Earlier attempts at the same task still running in
        this process have lost it (this claim is newer): they are flagged lost here, and the
        new lease names them (Lease.earlier) for it to wait for."""
        with self._lock:
            attempts = self._leases.setdefault(task_id, {})
            earlier = list(attempts.values())
            for old in earlier:
                old.lost.set()
            lease = Lease(task_id, attempt, self, earlier)
            attempts[attempt] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
        return lease

    def running(self) -> list[Lease]:
        with self._lock:
            return [lease for attempts in self._leases.values() for lease in attempts.values()]

    def stop_for_shutdown(self) -> None:
        """Ask every running attempt to stop and give its task back."""
        for lease in self.running():
            lease.stop_for_shutdown()

    def _drop(self, lease: Lease) -> None:
        with self._lock:
            attempts = self._leases.get(lease.task_id, {})
            if attempts.get(lease.attempt) is lease:
                del attempts[lease.attempt]
                if not attempts:
                    del self._leases[lease.task_id]

    def beat(self) -> None:
        leases = [lease for lease in self.running() if not lease.lost.is_set()]
        if not leases:
            return
        # Only progress that changed since the last beat is written (and moves updated_on).
        progress = {
            lease.task_id: lease.progress
            for lease in leases
            if lease.progress is not lease._beaten_progress
        }
        conn = self._connection()
        try:
            owned = tasks.heartbeat(
                conn, self.worker, {lease.task_id: lease.attempt for lease in leases}, progress
            )
        except psycopg.Error:
            self._close()
            raise
        with self._lock:
            for lease in leases:
                if lease.task_id in progress:
                    lease._beaten_progress = progress[lease.task_id]
                held = self._leases.get(lease.task_id, {}).get(lease.attempt) is lease
                if (
                    lease.task_id in owned
                    or not held
                    or lease.state is not LeaseState.HELD
                    or lease.lost.is_set()
                ):
                    continue
                logger.warning(
                    "lease lost",
                    extra={
                        "task_id": lease.task_id,
                        "attempt": lease.attempt,
                        "worker": self.worker,
                    },
                )
                lease.lost.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close()

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            conn = connect(self.database_url, autocommit=True, durable=False)
            # Belt and braces: the statement skips locked rows, but nothing may hold a beat up
            # for longer than a beat interval.
            limit_ms = max(100, int(self.interval * 1000))
            conn.execute(f"SET lock_timeout = {limit_ms}")
            conn.execute(f"SET statement_timeout = {limit_ms * 2}")
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the database may be away; the next beat tries again
                if not failing:  # once per outage, not once per beat
                    logger.warning("heartbeat failing", extra={"error": str(exc)})
                failing = True
            else:
                if failing:
                    logger.info("heartbeat recovered")
                failing = False
        self._close()
