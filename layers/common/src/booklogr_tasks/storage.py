"""Where export files live: a local folder (the volume shared by API and listener) or S3.

A file is written under its final key as a *pending* export: streamed, made durable, and only
then published. The worker publishes inside the transaction that records the export row and the
task's success, and discards the pending file if that transaction does not commit, so a crash at
any point leaves either no row or a complete file.

Keys are `<owner_id>/<format>-<task_id>-<export_id>.<ext>`: made from database ids only, so task
data cannot steer them, and every attempt at a task can find what an earlier, lost attempt left.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, Protocol

from booklogr_tasks.settings import Settings

CONTENT_TYPES = {"csv": "text/csv", "html": "text/html", "json": "application/json"}
_TEMP_SUFFIX = ".part"


def export_key(owner_id: int, fmt: str, task_id: int, export_id: int) -> str:
    return f"{owner_id}/{fmt}-{task_id}-{export_id}.{fmt}"


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


class _LocalPending:
    def __init__(self, root: Path, key: str) -> None:
        self.key = key
        self.final = root / key
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.final.with_name(f"{self.final.name}.{uuid.uuid4().hex[:8]}{_TEMP_SUFFIX}")
        self._file: IO[bytes] | None = open(self.temp, "xb", buffering=1 << 20)  # noqa: SIM115
        self.published = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._file is not None
        self._file.write(data)

    def complete(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def publish(self) -> None:
        os.replace(self.temp, self.final)
        _fsync_dir(self.final.parent)
        self.published = True

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for path in (self.temp, self.final if self.published else None):
            if path is not None:
                path.unlink(missing_ok=True)


class LocalFolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def begin(self, key: str, fmt: str) -> PendingExport:
        return _LocalPending(self.root, key)

    def path_of(self, key: str) -> Path:
        """The file for a key read from the database, refusing anything outside the folder."""
        root = self.root.resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"export key outside the export folder: {key!r}")
        return path

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        folder = self.root / str(owner_id)
        if not folder.is_dir():
            return 0
        removed = 0
        for path in folder.glob(f"{fmt}-{task_id}-*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def list_keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            str(path.relative_to(self.root)) for path in self.root.glob("*/*") if path.is_file()
        )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_store(settings: Settings) -> ExportStore:
    """S3 when EXPORT_BUCKET is set, else the local export folder."""
    if settings.export_bucket:
        from booklogr_tasks.s3_store import S3ExportStore

        return S3ExportStore(settings.export_bucket)
    return LocalFolderStore(settings.export_folder)
