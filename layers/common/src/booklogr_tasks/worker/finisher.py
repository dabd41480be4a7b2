"""Group commit: one transaction records the success of every task that finished while the
previous commit was under way.

Used for tasks whose success transaction is light: jobs with nothing to publish, and exports,
whose publish step inserts one row (their file is already durable under its final name). Many
small exports finishing at once then share one commit, and so one WAL flush, instead of paying
for one each. One task's failed publish does not undo the others' (see Finisher._finish). A
task's lease is handed over with it (worker/lease.py) and ended here once its group's
transaction is over, so it is beaten until its success is committed. Used by listeners only: a
Lambda handler must not return before its commit, so it finishes its single task itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn, pooled
from booklogr_tasks.worker.lease import Lease


class Committed(StrEnum):
    """What became of a submitted task once its group's transaction ended."""

    SUCCESS = "success"  # recorded a success
    LOST = "lost"  # another attempt owns the task now
    UNKNOWN = "unknown"  # the commit broke: it may or may not have happened


# A Committed, or the exception the task's publish step raised (nothing of it was recorded).
Finished = Committed | Exception
Done = Callable[[Finished], None]

MAX_GROUP = 500


@dataclass
class _Pending:
    lease: Lease
    result: dict[str, Any] | None
    publish: Callable[[Conn], None] | None
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

    def submit(
        self,
        lease: Lease,
        result: dict[str, Any] | None,
        publish: Callable[[Conn], None] | None,
        done: Done,
    ) -> None:
        """Record this attempt's success with the next group; `done` hears what became of it,
        then its lease ends."""
        with self._cond:
            self._pending.append(_Pending(lease, result, publish, done))
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
                outcome = self._finish(conn, group)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Unknown whether the commit happened; if it did not, the leases expire and the
            # tasks run again (at-least-once).
            logger.warning("group commit failed", extra={"tasks": len(group), "error": str(exc)})
            outcome = [Committed.UNKNOWN] * len(group)
        for pending, finished in zip(group, outcome, strict=True):
            try:
                pending.done(finished)
            except Exception:
                logger.exception("finish callback failed", extra={"task_id": pending.lease.task_id})
            finally:
                pending.lease.end()

    def _finish(self, conn: Conn, group: list[_Pending]) -> list[Finished]:
        """Lock the group's tasks whose attempt still owns them, publish each, then mark every
        published one a success in one statement. Returns what became of each submission, in
        order. All of it is first sent as one pipeline (one round trip for the publish steps
        and the finish); should a publish step fail, which is rare, the group starts over with
        each publish step in a savepoint of its own, so that one task's failure does not undo
        the others'."""
        try:
            with conn.pipeline():
                return self._finish_group(conn, group, isolated=False)
        except psycopg.OperationalError:
            raise
        except Exception:
            conn.rollback()
            return self._finish_group(conn, group, isolated=True)

    def _finish_group(self, conn: Conn, group: list[_Pending], isolated: bool) -> list[Finished]:
        owned = tasks.lock_owned(
            conn, self.worker, [(p.lease.task_id, p.lease.attempt) for p in group]
        )
        outcome: list[Finished] = [Committed.LOST] * len(group)
        publishing: dict[int, int] = {}  # task id -> its submission's place in the group
        for place, pending in enumerate(group):
            # Only the attempt that owns the task now counts, and it only once.
            task_id, attempt = pending.lease.task_id, pending.lease.attempt
            if (task_id, attempt) not in owned or task_id in publishing:
                continue
            publishing[task_id] = place
        for task_id, place in list(publishing.items()):
            publish = group[place].publish
            if publish is None:
                continue
            if not isolated:
                publish(conn)
                continue
            try:
                with conn.transaction():
                    publish(conn)
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # its savepoint is rolled back: this task only
                outcome[place] = exc
                del publishing[task_id]
        results = {task_id: group[place].result for task_id, place in publishing.items()}
        attempts: dict[int, int | None] = {
            task_id: group[place].lease.attempt for task_id, place in publishing.items()
        }
        for task_id in tasks.finish_tasks(conn, self.worker, results, attempts):
            outcome[publishing[task_id]] = Committed.SUCCESS
        return outcome
