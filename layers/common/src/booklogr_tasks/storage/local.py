"""Exports in a local folder: the volume the API and the listeners share.

A pending file is written under a temporary name beside its final one, fsynced, and renamed into
place when published, so a reader never sees a partial file.

While an attempt writes its file it holds an exclusive flock on it (from before the file has its
`.part` name until it is published or discarded). Leftover cleanup only removes a `.part` file
whose lock it can take: the lock is released when its writer closes it or its process dies, so
a file another attempt is still writing, in this process or any other on the machine, is never
removed. An attempt that lost its task may still hold its file for a moment (it notices at its
next heartbeat, then discards it, or it is finishing a commit that will fail): cleanup waits up
to `writer_grace` seconds for such files to be let go, so a file renamed into place by a late
loser is found and removed too.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import time
import uuid
from pathlib import Path
from typing import IO, BinaryIO

from booklogr_tasks.core.errors import UploadMissing
from booklogr_tasks.core.models import UPLOADS, is_upload_key
from booklogr_tasks.storage.base import (
    PendingExport,
    copy_upload,
    legacy_task_prefix,
    task_prefix,
)

_TEMP_SUFFIX = ".part"

# Temporary names: unique in this process by the counter, across processes and machines by the
# random prefix. Neither costs a system call, and each one a listener's job thread makes is a
# chance for the GIL to change hands (a thread switch) while its other threads run.
_PROCESS_TAG = uuid.uuid4().hex[:6]
_SEQUENCE = itertools.count()


def _new_process_tag() -> None:
    """A forked child (a server's worker processes) gets a tag of its own."""
    global _PROCESS_TAG, _SEQUENCE
    _PROCESS_TAG = uuid.uuid4().hex[:6]
    _SEQUENCE = itertools.count()


os.register_at_fork(after_in_child=_new_process_tag)


class _LocalPending:
    def __init__(self, root: Path, key: str) -> None:
        self.key = key
        self.final = root / key
        unique = f"{_PROCESS_TAG}{next(_SEQUENCE):x}"
        self.temp = self.final.with_name(f"{self.final.name}.{unique}{_TEMP_SUFFIX}")
        # Created under a name cleanup never looks at, locked, then renamed: a `.part` file
        # exists only while locked by a live writer (or after its writer died).
        creating = self.final.with_name(f".{self.final.name}.{unique}.new")
        try:
            file = open(creating, "xb", buffering=1 << 20)  # noqa: SIM115
        except FileNotFoundError:  # the first file in its folder (or the folder was removed)
            self.final.parent.mkdir(parents=True, exist_ok=True)
            file = open(creating, "xb", buffering=1 << 20)  # noqa: SIM115
        self._file: IO[bytes] | None = file
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        os.rename(creating, self.temp)
        self.published = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._file is not None
        self._file.write(data)

    def complete(self) -> None:
        """Durable, but still open (and locked) until published or discarded."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def publish(self) -> None:
        os.replace(self.temp, self.final)
        _fsync_dir(self.final.parent)
        self.published = True
        self._close()

    def discard(self) -> None:
        for path in (self.temp, self.final if self.published else None):
            if path is not None:
                path.unlink(missing_ok=True)
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


class LocalFolderStore:
    def __init__(self, root: Path, writer_grace: float = 0.0) -> None:
        self.root = root
        self.writer_grace = writer_grace

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

    def begin_upload(self, key: str) -> PendingExport:
        # Written like an export: under a temporary name, fsynced, then renamed into place.
        return _LocalPending(self.root, self._upload_path(key))

    def save_upload(self, key: str, source: BinaryIO, max_bytes: int) -> int:
        return copy_upload(source, self.begin_upload(key), max_bytes)

    def upload_usage(self, owner_id: int) -> int:
        folder = self.root / UPLOADS / str(owner_id)
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def open_upload(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(self._upload_path(key)), "rb")
        except FileNotFoundError:
            raise UploadMissing(key) from None

    def direct_upload(self, key: str, max_bytes: int, expires: int) -> None:
        return None  # a folder has no address of its own: files come through POST /v1/files

    def _upload_path(self, key: str) -> str:
        if not is_upload_key(key):
            raise ValueError(f"not an upload key: {key!r}")
        self.path_of(key)  # refuses a key that leads outside the folder
        return key

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        """Files of earlier attempts at this task that nobody writes any more: `.part` files
        whose writer is gone (their lock is free), and final files that were published by an
        attempt whose success did not commit (a final file is complete: nobody writes it).
        Files still held are waited for, up to `writer_grace` seconds, then left alone."""
        if not self.root.is_dir():
            return 0
        prefixes = (task_prefix(fmt, task_id), legacy_task_prefix(owner_id, fmt, task_id))
        deadline = time.monotonic() + self.writer_grace
        removed = 0
        while True:
            held = False
            for path in (p for prefix in prefixes for p in self.root.glob(f"{prefix}*")):
                if path.name.endswith(_TEMP_SUFFIX) and _being_written(path):
                    held = True
                    continue
                path.unlink(missing_ok=True)
                removed += 1
            if not held or time.monotonic() >= deadline:
                return removed
            time.sleep(0.05)

    def list_keys(self) -> list[str]:
        """This service's exports (BookLogr's own files in a shared folder are not listed)."""
        if not self.root.is_dir():
            return []
        found = [*self.root.glob("export_*-*-*"), *self.root.glob("*/*")]
        return sorted(str(path.relative_to(self.root)) for path in found if path.is_file())


def _being_written(path: Path) -> bool:
    """True while some attempt holds the lock on this file (it is still writing it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # renamed or removed by its writer just now: not ours to touch
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # also releases a lock taken above
    return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
