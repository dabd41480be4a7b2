"""BookLogr's own /v1/files routes, so BookLogr's web app works against this service unchanged.

- GET /v1/files: the caller's rows of BookLogr's `files` table, newest first. Every export this
  service finishes gets a row there (jobs/exports/base.py), BookLogr's own exports have theirs,
  so one list holds both, each file once. The migrations create `files` in BookLogr's shape
  where BookLogr has not, so the table is always there.
- GET /v1/files/<filename>: a file of that list. This service's exports are answered like
  GET /v1/exports/<format>/<id> (the file, or a presigned link in S3 mode); BookLogr's own
  are read from EXPORT_FOLDER, the folder BookLogr writes them to.
- POST /v1/files: an import uploaded as multipart/form-data (`file`, `type`,
  `allow_duplicates`), streamed to the store, run as an import task. The request waits a few
  seconds for it: 200 "Imported X/Y books." as BookLogr answers, 422 with the import's error,
  or 202 naming the task to follow when it takes longer.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from booklogr_tasks.core.errors import (
    ImportFailed,
    InvalidField,
    NotFound,
    TaskNotFound,
    UploadQuotaExceeded,
)
from booklogr_tasks.core.formats import UNKNOWN_CONTENT_TYPE, content_type_of_extension
from booklogr_tasks.core.models import FINISHED, TaskReport, TaskStatus
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import files, tasks
from booklogr_tasks.http.multipart import FormReader, StoredUpload, boundary_of, megabytes
from booklogr_tasks.http.routes import (
    UPLOAD_IMPORT_TYPES,
    ExportFile,
    ExportLink,
    connection,
    create_task,
    local_file,
    stored_export,
    upload_types,
)
from booklogr_tasks.jobs import get_spec
from booklogr_tasks.storage import PendingExport, export_store, upload_key

FILE_FIELD = "file"
# A body the request holds whole is parsed in pieces of this size, as a streamed one arrives.
_PIECE_BYTES = 64 * 1024
# A name BookLogr could have given a file: no path, nothing hidden.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# Polling an import the request waits for: quick at first, then at most twice a second.
_FIRST_POLL_SECONDS, _MAX_POLL_SECONDS = 0.05, 0.5


class FileView(BaseModel):
    """BookLogr's shape: created_at is naive UTC without offset (the web app appends "Z")."""

    id: int
    filename: str
    created_at: datetime | None


class ImportAnswer(BaseModel):
    message: str
    task_id: int
    status: TaskStatus
    result: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def list_files(settings: Settings, owner_id: int) -> list[FileView]:
    with connection(settings) as conn:
        records = files.list_files(conn, owner_id)
    if not records:
        # BookLogr answers 404 here, and its web app expects it (it ignores a 404).
        raise NotFound("you have no files yet; request an export and it will be listed here")
    return [FileView.model_validate(r.model_dump()) for r in records]


def open_file(settings: Settings, owner_id: int, filename: str) -> ExportFile | ExportLink:
    """A file of the caller's list: an export of this service, or one of BookLogr's own."""
    if not _FILENAME.fullmatch(filename):
        raise _no_file(filename)
    with connection(settings) as conn:
        if files.get_file(conn, owner_id, filename) is None:
            raise _no_file(filename)
        export = files.export_of_file(conn, owner_id, filename)
    if export is not None:
        return stored_export(settings, export, filename)
    extension = filename.rsplit(".", 1)[-1].lower()
    content_type = content_type_of_extension(extension)
    return local_file(
        settings,
        filename,
        filename,
        content_type if content_type == UNKNOWN_CONTENT_TYPE else f"{content_type}; charset=utf-8",
        f"the file {filename!r}",
    )


def ensure_quota(settings: Settings, owner_id: int, size: int) -> None:
    """UploadQuotaExceeded when `size` more bytes would pass the owner's UPLOAD_QUOTA_BYTES."""
    used = export_store(settings).upload_usage(owner_id)
    quota = settings.upload_quota_bytes
    if used + size > quota:
        raise UploadQuotaExceeded(
            f"Your imports in progress already hold {megabytes(used)} of files, and this one "
            f"would take them past your limit of {megabytes(quota)}; upload it again once "
            "they have finished."
        )


class DirectUploadView(BaseModel):
    """A form to post one file with, straight to the store (S3), and the key that names it."""

    url: str
    fields: dict[str, str]
    file: str
    max_bytes: int
    expires_in: int


def direct_upload(settings: Settings, owner_id: int) -> DirectUploadView:
    """Where a file larger than a request through API Gateway may be goes: the client posts it
    to S3 with the form, then names `file` in an import task's data."""
    store = export_store(settings)
    room = settings.upload_quota_bytes - store.upload_usage(owner_id)
    if room <= 0:
        ensure_quota(settings, owner_id, 1)  # raises, with the sentence every upload gets
    key = upload_key(owner_id)
    max_bytes = min(settings.max_upload_bytes, room)
    form = store.direct_upload(key, max_bytes, settings.download_url_seconds)
    if form is None:
        raise NotFound(
            "Files go straight to storage only where they are kept in S3; here, upload the "
            "file to POST /v1/files."
        )
    return DirectUploadView(
        url=form.url,
        fields=form.fields,
        file=key,
        max_bytes=max_bytes,
        expires_in=settings.download_url_seconds,
    )


class UploadSink:
    """One upload's form, written as its body arrives: the file part to the store under a new
    key of the owner's, the other fields kept. write() each piece of the body, then finish(),
    or discard() on any error."""

    def __init__(
        self, settings: Settings, owner_id: int, content_type: str | None, body_limit: int
    ) -> None:
        self.reader = FormReader(
            boundary_of(content_type), FILE_FIELD, body_limit, settings.max_upload_bytes
        )
        self._store = export_store(settings)
        self._owner_id = owner_id
        self._pending: PendingExport | None = None

    def write(self, data: bytes) -> None:
        pieces = self.reader.feed(data)
        if self.reader.file_started and self._pending is None:
            self.reader.upload.key = upload_key(self._owner_id)
            self._pending = self._store.begin_upload(self.reader.upload.key)
        for piece in pieces:
            assert self._pending is not None
            self._pending.write(piece)

    def finish(self) -> StoredUpload:
        self.reader.close()
        if self._pending is not None:
            self._pending.complete()
            self._pending.publish()
        return self.reader.upload

    def discard(self) -> None:
        if self._pending is not None:
            self._pending.discard()


def upload_import(
    settings: Settings, owner_id: int, content_type: str | None, body: bytes
) -> ImportAnswer:
    """An upload whose whole body the request holds (on Lambda, where API Gateway bounds it):
    stored as the server stores a streamed one, then imported."""
    ensure_quota(settings, owner_id, len(body))
    sink = UploadSink(settings, owner_id, content_type, settings.max_upload_body_bytes)
    try:
        for start in range(0, len(body), _PIECE_BYTES):
            sink.write(body[start : start + _PIECE_BYTES])
        upload = sink.finish()
    except BaseException:
        sink.discard()
        raise
    return import_upload(settings, owner_id, upload)


def import_upload(settings: Settings, owner_id: int, upload: StoredUpload) -> ImportAnswer:
    """Create the import task of a stored upload and wait briefly for the outcome; the upload
    is deleted when no task is created."""
    store = export_store(settings)
    try:
        if upload.key is None:
            raise InvalidField(f"Choose a file to import (the form has no `{FILE_FIELD}` part).")
        if upload.size == 0:
            raise InvalidField("The file you chose is empty; choose the file to import.")
        task_type = _import_type(upload.fields.get("type"))
        allow_duplicates = _flag(upload.fields.get("allow_duplicates"), "allow_duplicates")
        # BookLogr's web app sends its checkbox whatever the type; a restore never doubles a book.
        data = {"file": upload.key, "allow_duplicates": allow_duplicates}
        if task_type == UPLOAD_IMPORT_TYPES["backup"]:
            data["allow_duplicates"] = False
        accepted = create_task(settings, owner_id, task_type, data)
    except BaseException:
        if upload.key is not None:
            _delete_quietly(store.delete, upload.key)
        raise
    logger.info(
        "import uploaded",
        extra={"task_id": accepted.task_id, "task_type": task_type, "bytes": upload.size},
    )
    return _outcome(settings, owner_id, accepted.task_id, settings.upload_wait_seconds)


def _outcome(settings: Settings, owner_id: int, task_id: int, wait_seconds: float) -> ImportAnswer:
    """The import's outcome if it finishes within `wait_seconds`, else a pointer to the task."""
    deadline = time.monotonic() + wait_seconds
    pause = _FIRST_POLL_SECONDS
    while True:
        report = _task(settings, owner_id, task_id)
        remaining = deadline - time.monotonic()
        if report.status in FINISHED or remaining <= 0:
            break
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _MAX_POLL_SECONDS)
    if report.status == "failure":
        raise ImportFailed(f"The import failed: {report.error or 'no reason was given'}")
    if report.status == "success":
        return ImportAnswer(
            message=imported_message(report.result or {}),
            task_id=task_id,
            status=report.status,
            result=report.result,
        )
    return ImportAnswer(
        message="Your import is running; its books will appear in your library in a moment.",
        task_id=task_id,
        status=report.status,
    )


def imported_message(result: dict[str, Any]) -> str:
    """BookLogr's answer: the books imported out of the rows the file held."""
    imported = int(result.get("imported", 0))
    rows = result.get("rows")
    if not isinstance(rows, int):  # results of imports that did not count the rows
        rows = imported + int(result.get("skipped_duplicates", 0))
        rows += len(result.get("skipped_invalid") or [])
    return f"Imported {imported}/{rows} books."


def _task(settings: Settings, owner_id: int, task_id: int) -> TaskReport:
    with connection(settings) as conn:
        try:
            return tasks.get_task(conn, task_id, owner_id)
        except TaskNotFound:
            # Deleted while we waited (retention cannot, it is not finished): say so plainly.
            raise NotFound(f"import task {task_id} no longer exists") from None


def _import_type(value: str | None) -> str:
    known = upload_types()
    if value is None or not value.strip():
        raise InvalidField(f"the form has no `type`; send one of: {', '.join(known)}")
    task_type = UPLOAD_IMPORT_TYPES.get(value.strip().lower())
    if task_type is None or get_spec(task_type) is None:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise InvalidField(f"unknown import type {shown!r}; known types: {', '.join(known)}")
    return task_type


def _flag(value: str | None, name: str) -> bool:
    """A boolean form field, as multipart carries one (the OpenAPI document's type): `true` or
    `false`, in any case (Python's requests writes True as "True"); a field left out is false.
    BookLogr's web app sends `true` when ticked."""
    text = "false" if value is None else value.lower()
    if text in ("true", "false"):
        return text == "true"
    raise InvalidField(f"`{name}` must be true or false")


def _delete_quietly(delete: Any, key: str) -> None:
    try:
        delete(key)
    except Exception as exc:  # the request's own error matters more than the cleanup's
        logger.warning("could not delete an upload", extra={"key": key, "error": str(exc)})


def _no_file(filename: str) -> NotFound:
    shown = filename if len(filename) <= 60 else filename[:60] + "…"
    return NotFound(f"you have no file named {shown!r}")


__all__ = [
    "FILE_FIELD",
    "FileView",
    "ImportAnswer",
    "UploadSink",
    "ensure_quota",
    "import_upload",
    "imported_message",
    "list_files",
    "open_file",
    "upload_import",
]
