"""Group commit for quick tasks: one transaction records the success of every task that
finished while the previous commit was under way.

A task whose job has nothing to publish (no export file, no import rows) only needs its status
set; doing that for many tasks at once turns one commit per task into one per group, which is
what lets a listener keep up with thousands of small tasks a second. The task's lease is held
until its success is committed. Used by listeners only: a Lambda handler must not return before
its commit, so it finishes its single task itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import pooled

# Called after the group's commit with whether this worker still owned the task.
Done = Callable[[bool], None]

MAX_GROUP = 500


@dataclass
class _Pending:
    task_id: int
    attempt: int
    result: dict[str, Any] | None
    done: Done


class Finisher:
    def __init__(self, database_url: str, worker: str) -> None:
        self.database_url = database_url
        self.worker = worker
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="finisher", daemon=True)
        self._thread.start()

    def submit(self, task_id: int, attempt: int, result: dict[str, Any] | None, done: Done) -> None:
        with self._cond:
            self._pending.append(_Pending(task_id, attempt, result, done))
            self._cond.notify()

    def close(self) -> None:
        """Commit what is pending, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        try:
            with pooled(self.database_url) as conn:
                owned = tasks.finish_tasks(
                    conn,
                    self.worker,
                    {p.task_id: p.result for p in group},
                    {p.task_id: p.attempt for p in group},
                )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Unknown whether the commit happened; if it did not, the leases expire and the
            # tasks run again (at-least-once), so report them as not recorded.
            logger.warning("group commit failed", extra={"tasks": len(group), "error": str(exc)})
            owned = set()
        for pending in group:
            try:
                pending.done(pending.task_id in owned)
            except Exception:
                logger.exception("finish callback failed", extra={"task_id": pending.task_id})
