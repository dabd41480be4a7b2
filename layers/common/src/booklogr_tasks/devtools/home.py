"""What `make run` (`booklogr-tasks dev`) keeps in `.booklogr-tasks` of the folder it runs in,
and how other commands find it there: the embedded server's data, the token secret, the exports,
and a lock held while a copy runs, naming its pid and address."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEV_HOME = Path(".booklogr-tasks")
PGDATA = "pgdata"
DEV_DATABASE = "booklogr"
SECRET_FILE = "auth-secret"
LOCK_FILE = "running.lock"


def find_home(start: Path | None = None) -> Path | None:
    """The `.booklogr-tasks` holding an embedded database, in `start` (default: the current
    folder) or a folder above it: commands run anywhere in the checkout find make run's."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEV_HOME / PGDATA / "PG_VERSION").is_file():
            return folder / DEV_HOME
    return None


@dataclass(frozen=True)
class Running:
    pid: int
    address: str


class RunLock:
    """Held by a running `dev` for its whole life; the kernel lets go when the process dies, so
    a crashed run never leaves a stale lock behind."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self, address: str) -> Running | None:
        """Take the lock and note this run in it; if another run holds it, return that run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, other = handle.read().strip().partition(" ")
            handle.close()
            return Running(int(pid) if pid.isdigit() else 0, other or "an unknown address")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {address}\n")
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
