"""The HTTP benchmark's baseline: the least an endpoint can do for the same requests, under the
same server (granian with `booklogr-tasks api`'s options and limits, and as many worker
processes as API_WORKERS gives the API, so the two are compared at the same defaults).

    python -m bench.http_baseline --port N      (DATABASE_URL and API_* from the environment)

POST /v1/tasks runs the statement the API's create runs (the INSERT under the per-user cap on
unfinished tasks, queries.INSERT_TASK_UNDER_CAP) and GET /v1/tasks/<id> the status route's
(queries.GET_OWN_TASK), with raw psycopg: no token check (the user id is read from the token
unchecked, so the database does the same work per user), no validation, no model, no pool.
One autocommit connection per handler thread.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.db import queries
from booklogr_tasks.http.server import server_options
from granian import Granian

INSERT = queries.INSERT_TASK_UNDER_CAP
SELECT = queries.GET_OWN_TASK

_local = threading.local()


def _conn(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    conn: psycopg.Connection[tuple[Any, ...]] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(url, autocommit=True)
        _local.conn = conn
    return conn


def insert(url: str, owner: int, cap: int) -> bytes:
    data = json.dumps({"owner_id": owner})
    params = {"type": "bench_noop", "data": data, "owner": owner, "cap": cap}
    row = _conn(url).execute(INSERT, params).fetchone()
    assert row is not None
    return json.dumps({"task_id": row[0], "status": "fresh"}).encode()


def select(url: str, task_id: int, owner: int) -> tuple[int, bytes]:
    cursor = _conn(url).execute(SELECT, {"id": task_id, "owner": owner})
    row = cursor.fetchone()
    if row is None:
        return 404, b'{"error": "not_found"}'
    keys = [column.name for column in cursor.description or ()]
    return 200, json.dumps(dict(zip(keys, row, strict=True)), default=str).encode()


def owner_of(headers: list[tuple[bytes, bytes]]) -> int:
    """The user id in the request's token, read without checking it (the API checks it)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            payload = value.split(b".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            return int(claims["id"])
    return 1


class Baseline:
    def __init__(self, url: str, threads: int, cap: int) -> None:
        self.url = url
        self.cap = cap
        self.executor = ThreadPoolExecutor(threads)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        more = True
        while more:  # drain the body
            message = await receive()
            more = message.get("more_body", False)
        loop = asyncio.get_running_loop()
        owner = owner_of(scope["headers"])
        if scope["method"] == "POST":
            status, body = (
                202,
                await loop.run_in_executor(self.executor, insert, self.url, owner, self.cap),
            )
        else:
            task_id = int(scope["path"].rsplit("/", 1)[1])
            status, body = await loop.run_in_executor(
                self.executor, select, self.url, task_id, owner
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def worker_app() -> Baseline:
    """The app of one worker process; granian calls it in each worker."""
    settings = get_settings()
    return Baseline(
        settings.database_url, settings.api_threads, settings.max_pending_tasks_per_user
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = get_settings()
    options = server_options(settings)
    Granian(
        "bench.http_baseline:worker_app", address=args.host, port=args.port, factory=True, **options
    ).serve()  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
