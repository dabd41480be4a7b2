"""3. Enqueue rate: booklogr_tasks.tasks.create_task, and POST /v1/tasks (`booklogr-tasks api`).

Baselines: the same INSERT written by hand with psycopg (tuple rows, no model), one commit per
task and all in one transaction; `executemany` (pipelined) shows what batching could reach.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from booklogr_tasks.db import pool as db
from booklogr_tasks.db import tasks

from bench import harness
from bench.harness import Mode, Result, Row

NAME = "enqueue"
TITLE = "Enqueue rate"
DATA = '{"owner_id": 1}'
INSERT = "INSERT INTO tasks (type, data, created_by) VALUES ('bench_noop', %s, 1) RETURNING id"
API_PORT_START = 18631


def ours_per_commit(url: str, n: int) -> float:
    def work(conn: db.Conn) -> None:
        for _ in range(n):
            tasks.create_task(conn, "bench_noop", DATA, 1)
            conn.commit()

    with db.connect(url) as conn:
        return harness.timed(lambda: work(conn))


def ours_one_transaction(url: str, n: int) -> float:
    def work(conn: db.Conn) -> None:
        for _ in range(n):
            tasks.create_task(conn, "bench_noop", DATA, 1)
        conn.commit()

    with db.connect(url) as conn:
        return harness.timed(lambda: work(conn))


def raw_per_commit(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        return harness.timed(lambda: [conn.execute(INSERT, (DATA,)).fetchone() for _ in range(n)])


def raw_one_transaction(url: str, n: int) -> float:
    def work(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        for _ in range(n):
            conn.execute(INSERT, (DATA,)).fetchone()
        conn.commit()

    with psycopg.connect(url) as conn:
        return harness.timed(lambda: work(conn))


def raw_executemany(url: str, n: int) -> float:
    def work(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(INSERT, [(DATA,)] * n, returning=True)
        conn.commit()

    with psycopg.connect(url) as conn:
        return harness.timed(lambda: work(conn))


def rate(fn: Callable[[str, int], float], url: str, n: int, reps: int) -> float:
    fn(url, max(10, n // 10))  # warm-up
    return harness.median([n / fn(url, n) for _ in range(reps)])


# --- through the API ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_rate(url: str, tmp: Path, n: int, reps: int) -> float:
    env = harness.process_env(url, tmp / "exports")
    env["SINGLE_USER_MODE"] = "true"
    # Every task created here stays fresh (nothing runs bench_noop): no cap may refuse them, and
    # the ones the other measurements left behind are not this user's unfinished work.
    env["MAX_PENDING_TASKS_PER_USER"] = "1000000000"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE tasks SET status = 'success' WHERE status = 'fresh'")
    port = free_port()
    command = [sys.executable, "-m", "booklogr_tasks.cli", "api", "--port", str(port)]
    with harness.processes([command], env, tmp, "api") as (proc,):

        def healthy() -> bool:
            proc.check_alive()
            try:
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                client.request("GET", "/healthz")
                return client.getresponse().status == 200
            except OSError:
                return False

        harness.wait_for(healthy, 30, "the API to answer /healthz", interval=0.1)
        body = json.dumps({"type": "bench_noop", "data": {}})

        def post_all(count: int) -> float:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.perf_counter()
            for _ in range(count):
                client.request("POST", "/v1/tasks", body, {"Content-Type": "application/json"})
                response = client.getresponse()
                response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST /v1/tasks answered {response.status}")
            return time.perf_counter() - started

        post_all(max(10, n // 10))
        return harness.median([n / post_all(n) for _ in range(reps)])


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    n, reps = mode.enqueue_tasks, mode.reps
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        per_commit_base = rate(raw_per_commit, url, n, reps)
        per_commit = rate(ours_per_commit, url, n, reps)
        one_tx_base = rate(raw_one_transaction, url, n, reps)
        one_tx = rate(ours_one_transaction, url, n, reps)
        many = rate(raw_executemany, url, n, reps)
        # A slice of n is enough to tell the rate of sequential requests.
        api_n = max(10, n // 20)
        api = api_rate(url, tmp, api_n, reps)
    result.add(
        Row(
            "create_task, commit per task",
            round(per_commit),
            "tasks/s",
            round(per_commit_base),
            "hand-written INSERT, autocommit",
            harness.ratio(per_commit, per_commit_base),
        )
    )
    result.add(
        Row(
            "create_task xN, one transaction",
            round(one_tx),
            "tasks/s",
            round(one_tx_base),
            "hand-written INSERT loop, one transaction",
            harness.ratio(one_tx, one_tx_base),
        )
    )
    result.add(
        Row(
            "create_task xN, one transaction vs pipelined executemany",
            round(one_tx),
            "tasks/s",
            round(many),
            "executemany (pipeline), one transaction",
            harness.ratio(one_tx, many),
        )
    )
    result.add(
        Row(
            "POST /v1/tasks (keep-alive, sequential)",
            round(api),
            "tasks/s",
            round(per_commit),
            "create_task, commit per task",
            harness.ratio(api, per_commit),
            note=f"{api_n} requests per rep",
        )
    )
    result.details = {"tasks_per_rep": n}
    result.note = f"{n} tasks per rep, median of {reps} reps; no target in the issue"
    return result
