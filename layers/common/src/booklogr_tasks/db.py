"""Connections and pools. One pool per database URL per process, created lazily.

Lambda containers freeze between invocations, so every pooled connection is checked before it is
handed out (psycopg_pool's check_connection) instead of trusting a socket that may have died.
"""

from __future__ import annotations

import threading
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


def with_keepalive(url: str) -> str:
    return make_conninfo(url, **KEEPALIVE)


def connect(url: str, *, autocommit: bool = False) -> Conn:
    return psycopg.connect(with_keepalive(url), autocommit=autocommit, row_factory=dict_row)


def get_pool(url: str, *, max_size: int = 10) -> ConnectionPool[Conn]:
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                with_keepalive(url),
                min_size=1,
                max_size=max_size,
                kwargs={"row_factory": dict_row},
                check=ConnectionPool.check_connection,
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
