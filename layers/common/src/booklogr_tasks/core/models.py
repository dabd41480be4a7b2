"""Pydantic models at the edges: rows read from `tasks`, and the payload each task type accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

TaskStatus = Literal["fresh", "started", "success", "failure"]
FINISHED: frozenset[str] = frozenset({"success", "failure"})


class Task(BaseModel):
    """One row of `tasks`, as workers see it."""

    model_config = ConfigDict(frozen=True)

    id: int
    type: str
    data: str
    status: TaskStatus
    worker: str | None
    created_at: datetime
    updated_on: datetime | None
    created_by: int
    error: str | None
    attempts: int
    # A task given back after a lost connection, a timeout or a lost worker waits until then.
    run_after: datetime | None = None


class TaskReport(Task):
    """A task with what it reports besides its status (the `task_results` side table)."""

    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class OwnerPayload(BaseModel):
    """Every payload names the user whose data the task reads or writes."""

    model_config = ConfigDict(extra="forbid")

    owner_id: StrictInt = Field(ge=1, le=2**31 - 1)


class ExportPayload(OwnerPayload):
    pass


class ImportPayload(OwnerPayload):
    csv: StrictStr = Field(min_length=1, description="the whole file's text")
    allow_duplicates: StrictBool = False


class ExportRecord(BaseModel):
    """One row of an `*_export` table: a finished file a user can download."""

    id: int
    format: str
    filename: str
    owner_id: int
    created_at: datetime
    task_id: int | None
