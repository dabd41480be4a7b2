"""What a job is: a payload model, a function, and (for exports) a format.

A job returns an Outcome. Its `publish` step runs inside the transaction that marks the task a
success (an export inserts its row there, an import loads its books), `discard` undoes side
effects if that transaction does not commit, and `committed` runs once it has. A job reports a
problem the user can fix by raising JobError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from booklogr_tasks.core.models import Task
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db.pool import Conn

P = TypeVar("P", bound=BaseModel)


class AttemptLease(Protocol):
    """What a job sees of its attempt's lease (worker/lease.py owns the rest of it)."""

    def report_progress(self, done: int, total: int | None = None) -> None: ...

    def check(self) -> None:
        """Raise TaskLost if this attempt no longer owns the task."""


@dataclass
class JobContext:
    task: Task
    worker: str
    settings: Settings
    lease: AttemptLease

    def report_progress(self, done: int, total: int | None = None) -> None:
        self.lease.report_progress(done, total)

    def check_lost(self) -> None:
        """Raise TaskLost if another worker owns the task now; jobs call it between chunks."""
        self.lease.check()


@dataclass
class Outcome:
    # Stored with the success; `publish` runs first and may still fill it in.
    result: dict[str, Any] | None = None
    publish: Callable[[Conn], None] | None = None
    discard: Callable[[], None] | None = None
    # The publish step is a few row writes: it may share one transaction (and one commit) with
    # other tasks' finishes. An import's bulk load is not, and commits on its own.
    light_publish: bool = False

    @property
    def group_committable(self) -> bool:
        return self.publish is None or self.light_publish

    # After the success committed (must not raise): e.g. an import deletes the file it read.
    committed: Callable[[], None] | None = None


@dataclass(frozen=True)
class JobSpec(Generic[P]):
    task_type: str
    payload_model: type[P]
    run: Callable[[JobContext, P], Outcome]
    summary: str
    export_format: str | None = None

    def parse(self, data: str) -> P:
        return self.payload_model.model_validate_json(data)
