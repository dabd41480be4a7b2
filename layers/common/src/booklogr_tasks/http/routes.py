"""What each HTTP route does, as plain functions: parse, act through tasks/storage, answer.

Every function takes the settings and the caller's user id (already authenticated), returns a
typed result, and raises a typed ApiError (errors.py) for anything the caller got wrong or the
service cannot do right now. The Chalice app only maps these to responses.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from booklogr_tasks.core.errors import (
    BadRequest,
    Conflict,
    ConnectionLost,
    InvalidField,
    NotFound,
    PayloadTooLarge,
    PendingCapReached,
    TaskNotFound,
    TaskNotRetryable,
    TooManyPendingTasks,
    Unavailable,
    UnknownTaskType,
)
from booklogr_tasks.core.formats import content_type_of, export_formats, file_extension
from booklogr_tasks.core.models import (
    FINISHED,
    ExportRecord,
    ImportPayload,
    Task,
    TaskReport,
)
from booklogr_tasks.core.observability import count_metric, logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn, live_connection
from booklogr_tasks.jobs import REGISTRY, JobSpec, get_spec, known_types
from booklogr_tasks.storage import (
    LocalFolderStore,
    download_name,
    export_store,
    upload_key,
)

# A request waits this long for a pooled connection before answering 503: long enough to ride
# out a reconnect, short enough that a client is not left hanging when the database is down.
DB_WAIT_SECONDS = 5.0
# How long a request waits for the pool before it opens a connection of its own: the pool may be
# between reconnection attempts (seconds apart) when the database has just come back.
POOL_WAIT_SECONDS = 1.0
# What polling clients are told to wait between two looks at an unfinished task.
RETRY_AFTER_SECONDS = 2
# What a caller over the pending-task cap is told to wait before trying again.
PENDING_RETRY_AFTER_SECONDS = 10
MAX_PAGE = 100
DEFAULT_TASK_PAGE = 50
_MAX_ID = 2**63 - 1  # ids are bigint
# POST /v1/files: the web app's `type` values (BookLogr's own `csv` and `goodreads`) and this
# service's other formats, to the import task that reads them (used where it is registered).
UPLOAD_IMPORT_TYPES = {
    "csv": "booklogr_csv_import",
    "goodreads": "goodreads_import",
    "storygraph": "storygraph_import",
    "calibre": "calibre_import",
    "backup": "backup_import",
}
_ID_TEXT = re.compile(r"[0-9]{1,19}")


# --- results ---------------------------------------------------------------------------------


class Accepted(BaseModel):
    message: str
    task_id: int
    status: Literal["fresh"] = "fresh"


class TaskView(TaskReport):
    """What the status and list endpoints answer for a task: its state (TaskState, never its
    data) and its report (progress, result)."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, report: TaskReport) -> TaskView:
        return cls.model_validate(report.model_dump())


class TaskPage(BaseModel):
    items: list[TaskView]
    # Pass as `before` to get the next (older) page; null on the last page.
    next_before: int | None


class ExportView(BaseModel):
    id: int
    format: str
    filename: str
    created_at: datetime
    task_id: int | None
    download: str


class ExportList(BaseModel):
    items: list[ExportView]


class ExportFile(BaseModel):
    """A finished export in the local folder: where it is (never told to the client) and how
    to name it; the face streams or reads it."""

    filename: str
    content_type: str
    path: Path


class ExportLink(BaseModel):
    url: str


# --- requests --------------------------------------------------------------------------------


class CreateTaskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: StrictStr
    # An object, or the same object as JSON text; checked by _validated_payload.
    data: Any = Field(default_factory=dict)


class TaskInvocation(BaseModel):
    """The event a task's Lambda function receives."""

    task_id: StrictInt = Field(ge=1, le=_MAX_ID)


# --- routes ----------------------------------------------------------------------------------


def create_task_request(
    settings: Settings, owner_id: int, body: bytes, content_length: str | None
) -> Accepted:
    request = _parse_create_body(body, content_length, settings.max_body_bytes)
    return create_task(settings, owner_id, request.type, request.data)


def create_task(settings: Settings, owner_id: int, task_type: str, data: Any) -> Accepted:
    """Validate `data` for the type (owner_id is the caller) and insert the task."""
    spec = get_spec(task_type)
    if spec is None:
        raise UnknownTaskType(
            f"unknown task type {_short(task_type)}; known types: {', '.join(known_types())}"
        )
    payload = _validated_payload(spec, data, owner_id)
    with _file_stored(settings, payload) as stored, _connection(settings) as conn:
        task = create_capped(conn, settings, spec.task_type, stored.model_dump_json(), owner_id)
    logger.info(
        "task created", extra={"task_id": task.id, "task_type": task.type, "owner_id": owner_id}
    )
    count("TasksCreated", task_type=task.type)
    return Accepted(message=started_message(task.type), task_id=task.id)


def started_message(task_type: str) -> str:
    """What BookLogr's web app shows a reader (as a toast) once their task is created: about
    their library; the task's id and address travel in `task_id` and `Location`."""
    if task_type.endswith("_import"):
        return "Your import has started; its books will appear in your library in a moment."
    if task_type.endswith("_export"):
        return (
            f"Your {_kind(task_type)} has started; it will appear under Available exports "
            "in a few seconds."
        )
    return "Your request has started; it will be done in a moment."


def _kind(task_type: str) -> str:
    """csv_export → "CSV export", goodreads_export → "Goodreads export"."""
    fmt = task_type.removesuffix("_export")
    return f"{fmt.upper() if len(fmt) <= 4 else fmt.capitalize()} export"


def create_capped(conn: Conn, settings: Settings, task_type: str, data: str, owner_id: int) -> Task:
    """Create and commit a task for the caller unless they already have
    MAX_PENDING_TASKS_PER_USER unfinished ones (TooManyPendingTasks, 429, nothing stored). Every
    route that creates a task for a user goes through here."""
    cap = settings.max_pending_tasks_per_user
    task = tasks.create_task_under_cap(conn, task_type, data, owner_id, cap)
    if task is None:
        raise _at_cap(cap)
    return task


def ensure_room(settings: Settings, owner_id: int) -> None:
    """TooManyPendingTasks when the caller is at the cap now: asked before a request's body is
    read (the create itself decides for certain)."""
    cap = settings.max_pending_tasks_per_user
    with _connection(settings) as conn:
        if not tasks.has_room_under_cap(conn, owner_id, cap):
            raise _at_cap(cap)


def _at_cap(cap: int) -> TooManyPendingTasks:
    return TooManyPendingTasks(
        f"You already have {cap} exports and imports in progress, the most at once; "
        "try again when one has finished.",
        retry_after=PENDING_RETRY_AFTER_SECONDS,
    )


def task_status(settings: Settings, owner_id: int, task_id: str) -> TaskView:
    tid = _parse_id(task_id, "task")
    with _connection(settings) as conn:
        try:
            return TaskView.of(tasks.get_task(conn, tid, owner_id))
        except TaskNotFound:
            raise _no_task(task_id) from None


def retry(settings: Settings, owner_id: int, task_id: str) -> Accepted:
    tid = _parse_id(task_id, "task")
    with _connection(settings) as conn:
        try:
            task = tasks.retry_task(
                conn, tid, owner_id, known_types(), settings.max_pending_tasks_per_user
            )
        except TaskNotFound:
            raise _no_task(task_id) from None
        except PendingCapReached as exc:
            raise _at_cap(exc.cap) from None
        except TaskNotRetryable as exc:
            if not exc.ours:
                raise Conflict(
                    f"task {tid} is run by BookLogr itself, not by this service; "
                    "start it again from BookLogr"
                ) from None
            raise Conflict(
                f"task {tid} is {exc.status}; only a failed task can be retried"
            ) from None
    logger.info("task retried", extra={"task_id": task.id, "task_type": task.type})
    return Accepted(message=started_message(task.type), task_id=task.id)


def list_tasks(settings: Settings, owner_id: int, query: Mapping[str, str]) -> TaskPage:
    _known_params(query, "limit", "before")
    size = _query_int("limit", query.get("limit"), DEFAULT_TASK_PAGE, 1, MAX_PAGE)
    before = query.get("before")
    cursor = None if before is None else _query_int("before", before, 0, 1, _MAX_ID)
    with _connection(settings) as conn:
        # One extra row tells whether an older page exists without a second query.
        reports = tasks.list_tasks(conn, owner_id, limit=size + 1, before=cursor)
    items = [TaskView.of(r) for r in reports[:size]]
    return TaskPage(items=items, next_before=items[-1].id if len(reports) > size else None)


def list_exports(settings: Settings, owner_id: int, query: Mapping[str, str]) -> ExportList:
    _known_params(query, "limit")
    size = _query_int("limit", query.get("limit"), MAX_PAGE, 1, MAX_PAGE)
    with _connection(settings) as conn:
        records = tasks.list_exports(conn, owner_id, limit=size)
    return ExportList(
        items=[
            ExportView(
                id=r.id,
                format=r.format,
                filename=download_name(r.format, r.id),
                created_at=r.created_at,
                task_id=r.task_id,
                download=f"/v1/exports/{r.format}/{r.id}",
            )
            for r in records
        ]
    )


def open_export(
    settings: Settings, owner_id: int, fmt: str, export_id: str
) -> ExportFile | ExportLink:
    """The export's bytes (local folder) or a short-lived link to them (S3)."""
    eid = _parse_id(export_id, "export")
    with _connection(settings) as conn:
        try:
            record = tasks.get_export(conn, fmt, eid, owner_id)
        except TaskNotFound:
            raise NotFound(f"there is no {_short(fmt)} export {_short(export_id)}") from None
    return stored_export(settings, record, download_name(record.format, record.id))


def stored_export(
    settings: Settings, record: ExportRecord, download_as: str
) -> ExportFile | ExportLink:
    """A recorded export's file (local folder) or a short-lived link to it (S3)."""
    if settings.export_bucket:
        from booklogr_tasks.storage.s3 import S3ExportStore

        url = S3ExportStore(settings.export_bucket).presigned_url(
            record.filename, record.format, record.id, settings.download_url_seconds
        )
        return ExportLink(url=url)
    return local_file(
        settings,
        record.filename,
        download_as,
        f"{content_type_of(record.format)}; charset=utf-8",
        f"the file of {record.format} export {record.id}",
    )


def local_file(
    settings: Settings, key: str, download_as: str, content_type: str, what: str
) -> ExportFile:
    """A file of the local export folder; NotFound naming `what` when it is gone."""
    # The key comes from a database row, never from the request alone.
    try:
        path = LocalFolderStore(settings.export_folder).path_of(key)
        if not path.is_file():
            raise FileNotFoundError(key)
    except (OSError, ValueError) as exc:
        logger.warning("export file missing", extra={"key": key, "error": str(exc)})
        raise NotFound(f"{what} is no longer available") from None
    return ExportFile(filename=download_as, content_type=content_type, path=path)


def health(settings: Settings) -> dict[str, str]:
    with _connection(settings) as conn:
        conn.execute("SELECT 1")
    return {"status": "ok"}


def invocation_task_id(event: object) -> int:
    """The task id in a Lambda invocation event `{"task_id": N}`; ValueError if there is none."""
    try:
        return TaskInvocation.model_validate(event).task_id
    except ValidationError as exc:
        raise ValueError(f"not a task invocation event: {_describe(exc)}") from None


# --- the OpenAPI document --------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The committed document, with the task types and their payloads taken from the registry."""
    text = resources.files("booklogr_tasks.http").joinpath("openapi.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    schemas = doc["components"]["schemas"]
    schemas["TaskType"]["enum"] = known_types()
    schemas["ImportUpload"]["properties"]["type"]["enum"] = upload_types()
    schemas["CreateTask"] = {
        "oneOf": [_create_variant(spec, schemas) for _, spec in sorted(REGISTRY.items())]
    }
    _describe_formats(doc)
    return doc


def _describe_formats(doc: dict[str, Any]) -> None:
    """The export formats, their content types and extensions, from the registered formats."""
    formats = export_formats()
    download = doc["paths"]["/v1/exports/{format}/{id}"]["get"]
    (param,) = [p for p in download["parameters"] if p["name"] == "format"]
    param["schema"]["enum"] = formats
    param["description"] = "The export's format: " + ", ".join(
        f"`{fmt}` ({content_type_of(fmt)}, `.{file_extension(fmt)}`)" for fmt in formats
    )
    download["responses"]["200"]["content"] = {
        content_type_of(fmt): {"schema": {} if content_type_of(fmt).endswith("json") else _TEXT}
        for fmt in formats
    }
    doc["components"]["schemas"]["Export"]["properties"]["format"]["enum"] = formats


_TEXT = {"type": "string"}


def upload_types() -> list[str]:
    """The `type` values of POST /v1/files whose import this deployment has."""
    return [name for name, task_type in UPLOAD_IMPORT_TYPES.items() if task_type in REGISTRY]


def _create_variant(spec: JobSpec[Any], schemas: dict[str, Any]) -> dict[str, Any]:
    data = spec.payload_model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(data.pop("$defs", {}))
    # owner_id is the caller's: the API fills it in, so the document leaves it out.
    data["properties"].pop("owner_id", None)
    data["required"] = [name for name in data.get("required", []) if name != "owner_id"]
    if not data["required"]:
        del data["required"]
    data.pop("title", None)
    data["description"] = (
        f"{spec.summary} `owner_id` is set from your token (send it only as your own id); "
        "`data` may also be this object as a JSON string."
    )
    return {
        "type": "object",
        "title": spec.task_type,
        "additionalProperties": False,
        # `data` may be left out only when the type needs nothing but the caller's id.
        "required": ["type", "data"] if "required" in data else ["type"],
        "properties": {"type": {"type": "string", "enum": [spec.task_type]}, "data": data},
    }


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def _connection(settings: Settings) -> Iterator[Conn]:
    """A pooled connection in autocommit mode; a database that does not answer becomes 503, not
    500. A connection that breaks while the block runs is ConnectionLost, and the face runs the
    request once more: a backend terminated in the middle of a statement rolls it back, so only
    a connection lost between the server's commit and its answer (a network fault, not a
    restart) could make a create count twice. Autocommit: no request writes with more than one
    statement (a create or a retry under the cap is one, schema 0012), and a transaction around
    a single statement is two more round trips (BEGIN, COMMIT)."""
    try:
        with live_connection(
            settings.database_url, POOL_WAIT_SECONDS, DB_WAIT_SECONDS, autocommit=True
        ) as conn:
            try:
                yield conn
            except psycopg.OperationalError as exc:
                if conn.broken:
                    logger.warning("database connection lost", extra={"error": str(exc)})
                    raise ConnectionLost("the database connection was lost; try again") from None
                raise
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        logger.warning("database unavailable", extra={"error": str(exc)})
        raise Unavailable(
            "The service is not answering right now; try again in a moment."
        ) from None


# For the other route modules (files, auth): the same 503 for a database that does not answer.
connection = _connection


def _parse_create_body(body: bytes, content_length: str | None, limit: int) -> CreateTaskBody:
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BadRequest("the Content-Length header is not a number") from None
        if declared > limit:
            raise _too_large(limit)
    if len(body) > limit:
        raise _too_large(limit)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest('the body must be a JSON object: {"type": ..., "data": {...}}')
    try:
        return CreateTaskBody.model_validate(parsed)
    except ValidationError as exc:
        raise InvalidField(_describe(exc)) from None


def _validated_payload(spec: JobSpec[Any], data: Any, owner_id: int) -> BaseModel:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidField("data: not valid JSON text") from None
    if not isinstance(data, dict):
        raise InvalidField("data: must be a JSON object, or a JSON string holding one")
    given = data.get("owner_id", owner_id)
    if type(given) is not int or given != owner_id:
        raise InvalidField(
            f"data.owner_id: must be your own user id ({owner_id}) or left out; "
            "tasks always act for the caller"
        )
    try:
        payload: BaseModel = spec.payload_model.model_validate({**data, "owner_id": owner_id})
    except ValidationError as exc:
        raise InvalidField(_describe(exc, "data")) from None
    return payload


@contextmanager
def _file_stored(settings: Settings, payload: BaseModel) -> Iterator[BaseModel]:
    """An import's file text (`data.csv`) goes to the export store, as an upload does, and the
    task's data names it: files stay out of `tasks`. Removed again if the task is not created."""
    if not isinstance(payload, ImportPayload) or payload.csv is None:
        yield payload
        return
    key = upload_key(payload.owner_id)
    store = export_store(settings)
    # Text that is not UTF-8 (lone surrogates) stays detectably broken: the import names the line.
    data = io.BytesIO(payload.csv.encode("utf-8", "surrogatepass"))
    store.save_upload(key, data, settings.max_body_bytes)
    try:
        yield payload.model_copy(update={"csv": None, "file": key})
    except BaseException:
        store.delete(key)
        raise


def _parse_id(text: str, what: str) -> int:
    # Anything that is not an id cannot name a row: the same 404 as an id that does not exist.
    if _ID_TEXT.fullmatch(text) and 1 <= int(text) <= _MAX_ID:
        return int(text)
    raise NotFound(f"there is no {what} {_short(text)}")


def _known_params(query: Mapping[str, str], *known: str) -> None:
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {_short(unknown[0])}; this route takes {', '.join(known)}"
        )


def _query_int(name: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if _ID_TEXT.fullmatch(text) and low <= int(text) <= high:
        return int(text)
    raise BadRequest(f"query parameter {name} must be an integer from {low} to {high}")


def _no_task(task_id: str) -> NotFound:
    return NotFound(f"there is no task {_short(task_id)}")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for err in exc.errors():
        parts = [prefix, *map(str, err["loc"])] if prefix else list(map(str, err["loc"]))
        where = ".".join(parts)
        problems.append(f"{where or 'body'}: {err['msg']}")
    return "; ".join(problems)


def _short(value: str, limit: int = 60) -> str:
    """A caller's value quoted in a message, cut so an error never echoes a whole body."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def count(metric: str, **dimensions: str) -> None:
    """One CloudWatch (EMF) count, only where a metrics backend reads it (see observability)."""
    count_metric(metric, **dimensions)


__all__ = [
    "RETRY_AFTER_SECONDS",
    "UPLOAD_IMPORT_TYPES",
    "Accepted",
    "ExportFile",
    "ExportLink",
    "ExportList",
    "TaskPage",
    "TaskView",
    "connection",
    "count",
    "create_task",
    "create_task_request",
    "health",
    "invocation_task_id",
    "list_exports",
    "list_tasks",
    "local_file",
    "open_export",
    "openapi_document",
    "retry",
    "stored_export",
    "task_status",
    "upload_types",
]
