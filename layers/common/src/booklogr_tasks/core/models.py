"""Pydantic models at the edges: rows read from `tasks`, and the payload each task type accepts."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

TaskStatus = Literal["fresh", "started", "success", "failure"]
FINISHED: frozenset[str] = frozenset({"success", "failure"})


class TaskState(BaseModel):
    """One row of `tasks` without its payload: what status and list endpoints read."""

    model_config = ConfigDict(frozen=True)

    id: int
    type: str
    status: TaskStatus
    worker: str | None
    created_at: datetime
    updated_on: datetime | None
    created_by: int
    error: str | None
    attempts: int
    # A task given back after a lost connection, a timeout or a lost worker waits until then.
    run_after: datetime | None = None


class Task(TaskState):
    """One row of `tasks`, as workers see it."""

    data: str


class TaskReport(TaskState):
    """A task with what it reports besides its status (the `task_results` side table)."""

    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class OwnerPayload(BaseModel):
    """Every payload names the user whose data the task reads or writes."""

    model_config = ConfigDict(extra="forbid")

    owner_id: StrictInt = Field(ge=1, le=2**31 - 1)


class ExportPayload(OwnerPayload):
    pass


UPLOADS = "uploads"
# Where an owner's uploads are stored (storage.base.upload_key makes such keys): a name without
# separators or "..", so a payload can only ever name a file of its own owner.
UPLOAD_NAME = r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*"


def _document_csv_as_required(schema: dict[str, Any]) -> None:
    schema["required"] = [*schema.get("required", []), "csv"]


class ImportPayload(OwnerPayload):
    """The file to import: its text (`csv`), or the key of a stored upload (`file`).

    `file` names an upload of the owner's in the store: one posted straight to S3 with the form
    of POST /v1/uploads, a POST /v1/files upload, or a `csv` the API moved out of the task. The
    document describes `file` with POST /v1/uploads: no value a client could guess is valid.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_csv_as_required)

    csv: Annotated[
        StrictStr | None,
        WithJsonSchema({"type": "string", "minLength": 1, "description": "the whole file's text"}),
    ] = Field(None, min_length=1)
    file: SkipJsonSchema[StrictStr | None] = Field(None, max_length=300)
    allow_duplicates: StrictBool = False

    @model_validator(mode="after")
    def _one_source(self) -> ImportPayload:
        if (self.csv is None) == (self.file is None):
            raise ValueError("give exactly one of csv (the file's text) or file (an upload key)")
        if self.file is not None and not is_upload_of(self.file, self.owner_id):
            raise ValueError(f"file must be one of your uploads: uploads/{self.owner_id}/<name>")
        return self


def is_upload_of(key: str, owner_id: int) -> bool:
    """Whether `key` names a file in this owner's upload folder (and nothing outside it)."""
    prefix = f"{UPLOADS}/{owner_id}/"
    return key.startswith(prefix) and re.fullmatch(UPLOAD_NAME, key[len(prefix) :]) is not None


def upload_named_in(data: str | None, owner_id: int) -> str | None:
    """The key of the owner's upload that a task's data names, if any (any program may have
    written that data: anything else is None)."""
    try:
        key = json.loads(data or "")["file"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return key if isinstance(key, str) and is_upload_of(key, owner_id) else None


def is_upload_key(key: str) -> bool:
    """Whether `key` names a file in some owner's upload folder (and nothing outside it)."""
    return re.fullmatch(f"{UPLOADS}/[0-9]{{1,10}}/{UPLOAD_NAME}", key) is not None


class ExportRecord(BaseModel):
    """One row of an `*_export` table: a finished file a user can download."""

    id: int
    format: str
    filename: str
    owner_id: int
    created_at: datetime
    task_id: int | None
