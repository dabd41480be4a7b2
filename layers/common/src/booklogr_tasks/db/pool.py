"""Connections and pools. One pool per database URL per process, created lazily.

A pooled connection that has been idle for a while (a Lambda container frozen between
invocations, a quiet listener) is checked with a round trip before it is handed out, instead of
trusting a socket that may have died. One that was in use moments ago is handed out as it is:
checking it too would add a round trip to every claim and finish of a busy worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

# Every connection of this package returns rows as dicts.
Conn = psycopg.Connection[dict[str, Any]]

_pools: dict[str, ConnectionPool[Conn]] = {}
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


def _mark_returned(conn: Conn) -> None:
    conn._booklogr_returned_at = time.monotonic()  # type: ignore[attr-defined]


def _check_if_idle(conn: Conn) -> None:
    returned_at: float = getattr(conn, "_booklogr_returned_at", 0.0)
    if time.monotonic() - returned_at > IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


def with_keepalive(url: str) -> str:
    return make_conninfo(url, **KEEPALIVE)


def connect(url: str, *, autocommit: bool = False, durable: bool = True) -> Conn:
    """A connection of our own. `durable=False` commits without waiting for the WAL flush
    (synchronous_commit=off): for writes that a database crash may lose without harm, such as a
    claim, which the lease and the reaper recover from anyway."""
    conninfo = with_keepalive(url)
    if not durable:
        conninfo = make_conninfo(conninfo, options="-c synchronous_commit=off")
    return psycopg.connect(conninfo, autocommit=autocommit, row_factory=dict_row)


def get_pool(url: str, *, max_size: int = 10) -> ConnectionPool[Conn]:
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                with_keepalive(url),
                min_size=1,
                max_size=max_size,
                kwargs={"row_factory": dict_row},
                check=_check_if_idle,
                reset=_mark_returned,
                open=False,
                name="booklogr-tasks",
            )
            pool.open(wait=False)
            _pools[url] = pool
        return pool


@contextmanager
def pooled(url: str) -> Iterator[Conn]:
    """A pooled connection for one unit of work; the block's transaction commits on success."""
    with get_pool(url).connection() as conn:
        yield conn


def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
