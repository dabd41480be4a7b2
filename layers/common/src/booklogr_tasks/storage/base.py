"""Where export files live: a local folder (the volume shared by API and listener) or S3.

A file is written under its final key as a *pending* export: streamed, made durable, and only
then published under its key. The export row is inserted afterwards, in the transaction that
records the task's success, and the file is discarded if that transaction does not commit, so a
crash at any point leaves either no row or a complete file.

Keys are `export_<format>-<task_id>-<export_id>-<random>.<ext>` at the root of the store: made
from database ids and a random part, so task data cannot steer them, and every attempt at a task
can find what an earlier, lost attempt left (by the `export_<format>-<task_id>-` prefix). A bare
name at the root is also what BookLogr's own API serves from its EXPORT_FOLDER (`GET
/v1/files/<filename>`), and BookLogr's own names (`export_<YYMMDD>_<8 letters or digits>`) never
hold a `-`, so the two never collide. The random part keeps names from colliding across
databases: a database created afresh (a deleted data folder, another DATABASE_URL) counts its ids
from 1 again, and its exports must not overwrite files in a folder or bucket that outlived the
database. Older versions wrote `<owner_id>/<format>-<task_id>-<export_id>.<ext>`; leftovers are
looked for there too.

Uploaded files (what an import reads) live in the same store under `uploads/<owner_id>/<name>`,
so a task's data holds a short key instead of the file itself.
"""

from __future__ import annotations

import secrets
import uuid
from typing import BinaryIO, Protocol

from booklogr_tasks.core.errors import UploadTooLarge
from booklogr_tasks.core.formats import file_extension
from booklogr_tasks.core.models import UPLOADS

UPLOAD_CONTENT_TYPE = "application/octet-stream"
# Uploads are copied in pieces of this size: memory stays flat however large the file.
UPLOAD_CHUNK = 1024 * 1024


def export_key(fmt: str, task_id: int, export_id: int) -> str:
    return f"{task_prefix(fmt, task_id)}{export_id}-{secrets.token_hex(4)}.{file_extension(fmt)}"


def task_prefix(fmt: str, task_id: int) -> str:
    """What every key of one task's exports starts with (the trailing dash keeps task 1 from
    matching task 12's keys)."""
    return f"export_{fmt}-{task_id}-"


def legacy_task_prefix(owner_id: int, fmt: str, task_id: int) -> str:
    """The same, for files written by versions that kept exports in a folder per owner."""
    return f"{owner_id}/{fmt}-{task_id}-"


def download_name(fmt: str, export_id: int) -> str:
    """booklogr-export-7.csv; a format named apart from its extension says which it is:
    booklogr-export-7.goodreads.csv."""
    kind = "" if file_extension(fmt) == fmt else f".{fmt}"
    return f"booklogr-export-{export_id}{kind}.{file_extension(fmt)}"


def upload_key(owner_id: int) -> str:
    """A new, unguessable key for a file this owner uploads."""
    return f"{UPLOADS}/{owner_id}/{uuid.uuid4().hex}"


def copy_upload(source: BinaryIO, pending: PendingExport, max_bytes: int) -> int:
    """Stream `source` into `pending` and make it visible; past `max_bytes` (or on any error)
    remove what was written. Returns the size."""
    size = 0
    try:
        while chunk := source.read(UPLOAD_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge(max_bytes)
            pending.write(chunk)
        pending.complete()
        pending.publish()
    except BaseException:
        pending.discard()
        raise
    return size


class PendingExport(Protocol):
    key: str

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def complete(self) -> None:
        """All bytes written: make them durable (but not yet visible as the final file)."""

    def publish(self) -> None:
        """Make the file visible under its key, durably. Called once the file is complete and
        before the transaction that inserts its row, so a crash leaves at most a file without
        a row (a leftover the next attempt deletes), never a row without its file."""

    def discard(self) -> None:
        """Remove whatever was written; safe to call at any stage, and more than once."""


class ExportStore(Protocol):
    def begin(self, key: str, fmt: str) -> PendingExport: ...

    def delete(self, key: str) -> None: ...

    def begin_upload(self, key: str) -> PendingExport:
        """A new upload under `key`, written piece by piece; complete() then publish() it."""

    def upload_usage(self, owner_id: int) -> int:
        """Bytes of this owner's stored uploads (those being written included)."""

    def save_upload(self, key: str, source: BinaryIO, max_bytes: int) -> int:
        """Stream `source` to `key` in chunks and return its size. Past `max_bytes` nothing is
        kept and UploadTooLarge is raised. The file is complete once this returns."""

    def open_upload(self, key: str) -> BinaryIO:
        """The stored upload, to read as a stream; UploadMissing when there is none."""

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        """Delete files that earlier attempts at this task left (none of them has a row)."""

    def list_keys(self) -> list[str]:
        """Every stored export key (for retention and tests)."""
