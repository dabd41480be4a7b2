"""Leases: one thread per process beats every attempt the process runs, in one statement, on a
connection of its own.

The beat never waits behind anything else: not for a pool connection (jobs may hold them all),
not for a row lock (a task's long success transaction holds its row; the statement skips locked
rows, see queries.HEARTBEAT), and a lock_timeout bounds it should anything else block it. A
task whose beat finds it no longer owned (a reaper gave it away) is flagged `lost`; the job sees
that at its next check and stops, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import threading

import psycopg

from booklogr_tasks.core.lease import Lease
from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn, connect


class HeartbeatMonitor:
    def __init__(self, database_url: str, worker: str, interval: float) -> None:
        self.database_url = database_url
        self.worker = worker
        self.interval = interval
        # task id → attempt → lease. By task first: a claim looks up the task's earlier
        # attempts on every hold, and a scan of every lease there cost a listener a quarter of
        # its CPU once thousands of quick tasks waited for their group commit.
        self._leases: dict[int, dict[int, Lease]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None

    def hold(self, task_id: int, attempt: int = 0) -> tuple[Lease, list[Lease]]:
        """Start beating for this attempt. Returns its lease and the leases of earlier attempts
        at the same task still running in this process: they have lost the task (this claim is
        newer), so they are flagged lost here; the caller waits for them to end."""
        lease = Lease(task_id, attempt)
        with self._lock:
            attempts = self._leases.setdefault(task_id, {})
            earlier = list(attempts.values())
            for old in earlier:
                old.lost.set()
            attempts[attempt] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
        return lease, earlier

    def running(self) -> list[Lease]:
        with self._lock:
            return [lease for attempts in self._leases.values() for lease in attempts.values()]

    def drop(self, lease: Lease) -> None:
        """The attempt has ended: stop beating for it, and let a waiting attempt start."""
        with self._lock:
            attempts = self._leases.get(lease.task_id, {})
            if attempts.get(lease.attempt) is lease:
                del attempts[lease.attempt]
                if not attempts:
                    del self._leases[lease.task_id]
        lease.ended.set()

    def beat(self) -> None:
        leases = [lease for lease in self.running() if not lease.lost.is_set()]
        if not leases:
            return
        conn = self._connection()
        try:
            owned = tasks.heartbeat(
                conn,
                self.worker,
                {lease.task_id: lease.attempt for lease in leases},
                {lease.task_id: lease.progress for lease in leases},
            )
        except psycopg.Error:
            self._close()
            raise
        with self._lock:
            for lease in leases:
                held = self._leases.get(lease.task_id, {}).get(lease.attempt) is lease
                if lease.task_id in owned or not held or lease.finishing or lease.lost.is_set():
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
