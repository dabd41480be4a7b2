"""Connections and pools. One pool per database URL and mode per process, created lazily.

A pooled connection that has been idle for a while (a Lambda container frozen between
invocations, a quiet listener) is checked with a round trip before it is handed out, instead of
trusting a socket that may have died. One that was in use moments ago is only checked for a
hang-up the server already sent (its socket is readable while idle: a terminated backend's
goodbye), which costs no round trip. A dead connection is closed by the check, not reported as
a failure: psycopg_pool sleeps a second after every failed check, so a pool full of connections
the server dropped would keep a request waiting seconds. `_checkout` hands the closed ones back
(the pool replaces them) and takes the next at once.
"""

from __future__ import annotations

import re
import select
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from booklogr_tasks.core.errors import SettingsError

# Every connection of this package returns rows as dicts.
Conn = psycopg.Connection[dict[str, Any]]

# One pool per database URL and mode: transactions (workers: a block commits as a whole) or
# autocommit (the API: every request's statement commits on its own). A connection never
# changes mode, so none is handed out in the other's.
_pools: dict[tuple[str, bool], ConnectionPool[Conn]] = {}
_pools_lock = threading.Lock()

# Keep connections from hanging forever on a half-open socket.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 5,
}


IDLE_CHECK_SECONDS = 5.0


def _give_back(pool: ConnectionPool[Conn], conn: Conn) -> None:
    """Return a connection to the pool, noting when (for _check_if_idle). Noted here rather
    than in the pool's `reset` hook: with a hook, the pool hands every returned connection to
    its background thread, a thread switch per use (its cost: bench/README.md)."""
    conn._booklogr_returned_at = time.monotonic()  # type: ignore[attr-defined]
    pool.putconn(conn)


def _hung_up(conn: Conn) -> bool:
    """The server closed this idle connection (or it is unusable): anything to read on an idle
    connection's socket is a termination notice or end-of-file."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _check_if_idle(conn: Conn) -> None:
    returned_at: float = getattr(conn, "_booklogr_returned_at", 0.0)
    dead = _hung_up(conn)
    if not dead and time.monotonic() - returned_at > IDLE_CHECK_SECONDS:
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            dead = True
    if dead:
        conn.close()


def _checkout(pool: ConnectionPool[Conn], timeout: float) -> Conn:
    """A live connection from the pool; dead ones (closed by the check) go back at once."""
    deadline = time.monotonic() + timeout
    while True:
        conn = pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
        if not conn.closed:
            return conn
        pool.putconn(conn)  # the pool drops it and opens a replacement


def conninfo_for(url: str, session: Mapping[str, str] | None = None) -> str:
    """`url` with keepalives and a connect timeout, and the server settings in `session` (sent
    with the connection request: no extra round trip)."""
    if not session:
        return make_conninfo(url, **KEEPALIVE)
    ours = " ".join(f"-c {name}={value}" for name, value in session.items())
    # Options the operator put in DATABASE_URL (a search_path, say) are kept, before ours.
    theirs = conninfo_to_dict(url).get("options")
    options = f"{theirs} {ours}" if theirs else ours
    return make_conninfo(url, **KEEPALIVE, options=options)


def connect(
    url: str,
    *,
    autocommit: bool = False,
    durable: bool = True,
    session: Mapping[str, str] | None = None,
) -> Conn:
    """A connection of our own. `durable=False` commits without waiting for the WAL flush
    (synchronous_commit=off): for writes that a database crash may lose without harm, such as a
    claim, which the lease and the reaper recover from anyway. `session`: more server settings
    for this connection's whole life."""
    settings = dict(session or {})
    if not durable:
        settings["synchronous_commit"] = "off"
    return psycopg.connect(conninfo_for(url, settings), autocommit=autocommit, row_factory=dict_row)


def get_pool(url: str, *, max_size: int = 10, autocommit: bool = False) -> ConnectionPool[Conn]:
    with _pools_lock:
        pool = _pools.get((url, autocommit))
        if pool is None or pool.closed:
            pool = ConnectionPool(
                conninfo_for(url),
                min_size=1,
                max_size=max_size,
                kwargs={"row_factory": dict_row, "autocommit": autocommit},
                check=_check_if_idle,
                open=False,
                name="booklogr-tasks-autocommit" if autocommit else "booklogr-tasks",
            )
            pool.open(wait=False)
            _pools[(url, autocommit)] = pool
        return pool


@contextmanager
def pooled(url: str, timeout: float = 30.0) -> Iterator[Conn]:
    """A pooled connection for one unit of work; the block's transaction commits on success."""
    pool = get_pool(url)
    conn = _checkout(pool, timeout)
    try:
        with conn:
            yield conn
    finally:
        _give_back(pool, conn)


@contextmanager
def live_connection(
    url: str, pool_wait: float, timeout: float, *, autocommit: bool = False
) -> Iterator[Conn]:
    """A connection for one request: from the pool when it has one within `pool_wait` seconds,
    else a new connection of its own (closed afterwards), waiting at most `timeout` seconds in
    all. After the database came back, the pool may still be sleeping between reconnection
    attempts; a request must not wait for that when the database answers. `autocommit`: every
    statement is its own transaction (no BEGIN and COMMIT round trips around it)."""
    pool = get_pool(url, autocommit=autocommit)
    try:
        conn = _checkout(pool, min(pool_wait, timeout))
    except PoolTimeout:
        conninfo = make_conninfo(conninfo_for(url), connect_timeout=max(1, round(timeout)))
        with psycopg.connect(conninfo, row_factory=dict_row, autocommit=autocommit) as own:
            yield own
        return
    try:
        if autocommit:
            yield conn  # no transaction to end: `with conn` would only run an empty commit
        else:
            with conn:
                yield conn
    finally:
        _give_back(pool, conn)


def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def redacted(url: str) -> str:
    """The URL or conninfo string with its password hidden, for printing."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> None:
    """SettingsError, in one sentence, when `url` is not a PostgreSQL URL psycopg can read."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise SettingsError(
            f"DATABASE_URL is not a PostgreSQL URL ({reason}); write it as "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        ) from None


def connection_problem(exc: psycopg.OperationalError) -> str:
    """Why a connection failed, in a few words: libpq's reason without its framing."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # libpq: 'connection to server at "host", port 5432 failed: FATAL:  <why>'
    reason = lines[0].rsplit(" failed: ", 1)[-1] if lines else "no answer"
    return reason.removeprefix("FATAL:").strip()
