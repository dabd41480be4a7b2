"""Exports in a local folder: the volume the API and the listeners share.

A pending file is written under a temporary name beside its final one, fsynced, and renamed into
place when published, so a reader never sees a partial file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, BinaryIO

from booklogr_tasks.core.errors import UploadMissing
from booklogr_tasks.core.models import is_upload_key
from booklogr_tasks.storage.base import (
    PendingExport,
    copy_upload,
    legacy_task_prefix,
    task_prefix,
)

_TEMP_SUFFIX = ".part"


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

    def save_upload(self, key: str, source: BinaryIO, max_bytes: int) -> int:
        # Written like an export: under a temporary name, fsynced, then renamed into place.
        return copy_upload(source, _LocalPending(self.root, self._upload_path(key)), max_bytes)

    def open_upload(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(self._upload_path(key)), "rb")
        except FileNotFoundError:
            raise UploadMissing(key) from None

    def _upload_path(self, key: str) -> str:
        if not is_upload_key(key):
            raise ValueError(f"not an upload key: {key!r}")
        self.path_of(key)  # refuses a key that leads outside the folder
        return key

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        if not self.root.is_dir():
            return 0
        removed = 0
        for prefix in (task_prefix(fmt, task_id), legacy_task_prefix(owner_id, fmt, task_id)):
            for path in self.root.glob(f"{prefix}*"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def list_keys(self) -> list[str]:
        """This service's exports (BookLogr's own files in a shared folder are not listed)."""
        if not self.root.is_dir():
            return []
        found = [*self.root.glob("export_*-*-*"), *self.root.glob("*/*")]
        return sorted(str(path.relative_to(self.root)) for path in found if path.is_file())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
