"""Where export files live: a local folder (the volume shared by API and listener) or S3.

A file is written under its final key as a *pending* export: streamed, made durable, and only
then published. The worker publishes inside the transaction that records the export row and the
task's success, and discards the pending file if that transaction does not commit, so a crash at
any point leaves either no row or a complete file.

Keys are `<owner_id>/<format>-<task_id>-<export_id>-<random>.<ext>`: made from database ids and
a random part only, so task data cannot steer them, and every attempt at a task can find what an
earlier, lost attempt left (by the `<format>-<task_id>-` prefix). The random part keeps names
from colliding across databases: a database created afresh (a deleted data folder, another
DATABASE_URL) counts its ids from 1 again, and its exports must not overwrite older files in a
folder or bucket that outlived the database.
"""

from __future__ import annotations

import secrets
from typing import Protocol

CONTENT_TYPES = {"csv": "text/csv", "html": "text/html", "json": "application/json"}


def export_key(owner_id: int, fmt: str, task_id: int, export_id: int) -> str:
    return f"{owner_id}/{fmt}-{task_id}-{export_id}-{secrets.token_hex(4)}.{fmt}"


def download_name(fmt: str, export_id: int) -> str:
    return f"booklogr-export-{export_id}.{fmt}"


class PendingExport(Protocol):
    key: str

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def complete(self) -> None:
        """All bytes written: make them durable (but not yet visible as the final file)."""

    def publish(self) -> None:
        """Make the file visible under its key. Called inside the success transaction."""

    def discard(self) -> None:
        """Remove whatever was written; safe to call at any stage, and more than once."""


class ExportStore(Protocol):
    def begin(self, key: str, fmt: str) -> PendingExport: ...

    def delete(self, key: str) -> None: ...

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        """Delete files that earlier attempts at this task left (none of them has a row)."""

    def list_keys(self) -> list[str]:
        """Every stored export key (for retention and tests)."""
