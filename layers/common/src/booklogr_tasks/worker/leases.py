"""Leases: one thread per process beats every task the process runs, in one statement.

A task whose beat finds it no longer owned (a reaper gave it away) is flagged `lost`; the job
sees that at its next check and stops, leaving nothing behind.
"""

from __future__ import annotations

import threading

from booklogr_tasks.core.lease import Lease
from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import pooled


class HeartbeatMonitor:
    def __init__(self, database_url: str, worker: str, interval: float) -> None:
        self.database_url = database_url
        self.worker = worker
        self.interval = interval
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, task_id: int) -> Lease:
        lease = Lease(task_id)
        with self._lock:
            self._leases[task_id] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
        return lease

    def running(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def drop(self, task_id: int) -> None:
        with self._lock:
            self._leases.pop(task_id, None)

    def beat(self) -> None:
        with self._lock:
            leases = dict(self._leases)
        if not leases:
            return
        with pooled(self.database_url) as conn:
            owned = tasks.heartbeat(
                conn, self.worker, {tid: lease.progress for tid, lease in leases.items()}
            )
        for tid, lease in leases.items():
            if tid not in owned and not lease.lost.is_set():
                logger.warning("lease lost", extra={"task_id": tid, "worker": self.worker})
                lease.lost.set()

    def stop(self) -> None:
        self._stop.set()

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
