"""2. Throughput: a backlog of no-op tasks, drained by 1 and by 2 processes.

Baseline (`python -m bench.throughput --baseline-worker`): the classic hand-written queue loop —
in one transaction take up to 10 fresh rows `FOR UPDATE SKIP LOCKED`, run them, mark them done;
wait for a notification when the queue is empty.

Each rep inserts the whole backlog in one transaction; the rate is tasks / (last task finished -
backlog committed), both read from the server's clock.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import psycopg
from booklogr_tasks.worker.wiring import DEFAULT_CONCURRENCY

from bench import harness
from bench.harness import Mode, Result, Row

NAME = "throughput"
TARGET = 1.0
TITLE = "Throughput of no-op tasks"
WARMUP_TASKS = 200

TAKE = """
SELECT id, type, data FROM tasks WHERE status = 'fresh'
 ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED"""
DONE = "UPDATE tasks SET status = 'success', updated_on = now() WHERE id = ANY(%s)"
BACKLOG = """
INSERT INTO tasks (type, data, created_by)
SELECT 'bench_noop', '{"owner_id": 1}', 1 FROM generate_series(1, %s)"""


def baseline_worker(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN task_created")
        while True:
            with conn.transaction():
                rows = conn.execute(TAKE).fetchall()
                for _id, _type, data in rows:
                    json.loads(data)  # the no-op job reads its payload, as ours does
                if rows:
                    conn.execute(DONE, ([r[0] for r in rows],))
            if not rows:
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    pass


def drain(conn: psycopg.Connection[tuple[object, ...]], n: int, procs: list[harness.Proc]) -> float:
    """Enqueue a backlog of n tasks and wait for it; tasks per second."""
    harness.empty_queue(conn)
    with conn.transaction():
        conn.execute(BACKLOG, (n,))
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    committed: datetime = row[0]  # type: ignore[assignment]

    def drained() -> bool:
        for proc in procs:
            proc.check_alive()
        return harness.count_status(conn, "success", "bench_noop") >= n

    harness.wait_for(drained, 120, f"{n} tasks to finish", interval=0.05)
    end = conn.execute("SELECT max(updated_on) FROM tasks").fetchone()
    assert end is not None
    last: datetime = end[0]  # type: ignore[assignment]
    return n / (last - committed).total_seconds()


def measure(
    url: str, tmp: Path, mode: Mode, system: str, processes: int, log_level: str = "WARNING"
) -> list[float]:
    env = harness.process_env(url, tmp / "exports", log_level)
    command = (
        harness.listener_command(None)
        if system == "listener"
        else [sys.executable, "-m", "bench.throughput", "--baseline-worker", url]
    )
    label = f"{system}-{processes}-{log_level}"
    with (
        harness.processes([command] * processes, env, tmp, label) as procs,
        harness.connect(url) as conn,
    ):
        drain(conn, WARMUP_TASKS, procs)
        return [drain(conn, mode.throughput_tasks, procs) for _ in range(mode.reps)]


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    runs: dict[str, list[float]] = {}
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        for processes in (1, 2):
            runs[f"baseline-{processes}"] = measure(url, tmp, mode, "baseline", processes)
            runs[f"listener-{processes}"] = measure(url, tmp, mode, "listener", processes)
        for level in mode.log_levels:
            if level != "WARNING":
                runs[f"listener-1-{level}"] = measure(url, tmp, mode, "listener", 1, level)
    harness.rates_against_baseline(result, runs, "SKIP LOCKED LIMIT 10 loop", TARGET)
    one, two = harness.median(runs["listener-1"]), harness.median(runs["listener-2"])
    result.add(
        Row(
            metric="2 listener processes vs 1",
            value=round(two),
            unit="tasks/s",
            baseline=round(one),
            baseline_name="1 listener process",
            ratio=harness.ratio(two, one),
            target="≥ 1.0x",
            met=two >= one,
        )
    )
    for level in mode.log_levels:
        if level != "WARNING":
            ours = harness.median(runs[f"listener-1-{level}"])
            base = harness.median(runs["baseline-1"])
            result.add(
                Row(
                    metric=f"1 process, log level {level}",
                    value=round(ours),
                    unit="tasks/s",
                    baseline=round(base),
                    baseline_name="SKIP LOCKED LIMIT 10 loop",
                    ratio=harness.ratio(ours, base),
                )
            )
    result.details = {
        "tasks_per_rep": mode.throughput_tasks,
        "listener_concurrency": DEFAULT_CONCURRENCY,
        "reps_tasks_per_s": {k: [round(v) for v in vs] for k, vs in runs.items()},
    }
    result.note = (
        f"{mode.throughput_tasks} tasks per rep, listener at its defaults "
        f"(concurrency {DEFAULT_CONCURRENCY}), "
        f"log level WARNING unless said; median of {mode.reps} reps"
    )
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--baseline-worker"]:
    baseline_worker(sys.argv[2])
