"""1. Pickup latency: enqueue committed → job function entered, at a steady pace on a quiet queue.

Baseline (`python -m bench.pickup --baseline-worker`): the least a LISTEN-based worker can do —
one autocommit connection that LISTENs and, per notification, claims the task by id with one
`UPDATE … RETURNING` and records the entry time. It does not even finish its tasks (the
benchmark closes them after each round), so its numbers are a floor: the listener also commits
each task's end, on other connections, while it picks up the next.
"""

from __future__ import annotations

import select
import sys
import time
from pathlib import Path

import psycopg
from booklogr_tasks.worker.wiring import DEFAULT_CONCURRENCY

from bench import harness
from bench.harness import Mode, Result, Row
from bench.jobs import PROBE_ENV, read_probe_file, record_entry

NAME = "pickup"
TITLE = "Pickup latency (enqueue committed → job entered)"
WARMUP_TASKS = 20
PROBE_DATA = '{"owner_id": 1}'

CLAIM = """
UPDATE tasks SET status = 'started', worker = 'baseline', updated_on = now(),
                 attempts = attempts + 1
 WHERE id = %s AND status = 'fresh' RETURNING id, type, data"""
# The baseline only claims (finishing is not part of pickup); its tasks are closed after a round.
FINISH = "UPDATE tasks SET status = 'success' WHERE worker = 'baseline' AND status = 'started'"


def baseline_worker(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN task_created")
        while True:
            # Collected first: the notifies() generator holds the connection's lock. Notifies
            # that arrive during a query wait in psycopg's backlog, which timeout=0 returns.
            ids = [int(n.payload) for n in conn.notifies(timeout=0)]
            if not ids:
                select.select([conn.fileno()], [], [], 1.0)
            for task_id in ids:
                row = conn.execute(CLAIM, (task_id,)).fetchone()
                if row is not None:
                    record_entry(row[0], harness.now_ns())


def enqueue_at_pace(
    conn: psycopg.Connection[tuple[object, ...]], n: int, pace: float
) -> dict[int, int]:
    """Insert n probe tasks, one every `pace` seconds; task id → when its commit returned."""
    committed: dict[int, int] = {}
    start = time.monotonic()
    for i in range(n):
        delay = start + i * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        row = conn.execute(
            "INSERT INTO tasks (type, data, created_by) VALUES ('bench_probe', %s, 1) RETURNING id",
            (PROBE_DATA,),
        ).fetchone()
        assert row is not None
        committed[int(str(row[0]))] = harness.now_ns()
    return committed


def one_round(
    conn: psycopg.Connection[tuple[object, ...]],
    probe: Path,
    n: int,
    pace: float,
    check: harness.Proc,
) -> list[float]:
    committed = enqueue_at_pace(conn, n, pace)

    def all_entered() -> bool:
        check.check_alive()
        return probe.exists() and set(committed) <= set(read_probe_file(str(probe)))

    harness.wait_for(all_entered, 30, "every probe task to be entered", interval=0.02)
    conn.execute(FINISH)
    entered = read_probe_file(str(probe))
    return [(entered[tid] - at) / 1e6 for tid, at in committed.items()]


def wait_ready(
    conn: psycopg.Connection[tuple[object, ...]], probe: Path, proc: harness.Proc
) -> None:
    """Poke with single tasks until one is entered: the baseline misses tasks enqueued before
    it LISTENs (it has no sweep), so measuring must not start earlier."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.check_alive()
        (task_id,) = enqueue_at_pace(conn, 1, 0)

        def entered(task_id: int = task_id) -> bool:
            return probe.exists() and task_id in read_probe_file(str(probe))

        try:
            harness.wait_for(entered, 0.3, "entry")
            return
        except TimeoutError:
            continue
    raise TimeoutError(f"{proc.proc.args!r} never started running tasks")


def measure(url: str, tmp: Path, mode: Mode, system: str) -> list[dict[str, float]]:
    probe = tmp / f"{system}.probe"
    env = harness.process_env(url, tmp / "exports")
    env[PROBE_ENV] = str(probe)
    command = (
        harness.listener_command(None)
        if system == "listener"
        else [sys.executable, "-m", "bench.pickup", "--baseline-worker", url]
    )
    reps = []
    with harness.processes([command], env, tmp, system) as (proc,), harness.connect(url) as conn:
        wait_ready(conn, probe, proc)
        # Warm-up: every code path ran once and the connections are open.
        one_round(conn, probe, WARMUP_TASKS, 0.01, proc)
        for _ in range(mode.reps):
            samples = one_round(conn, probe, mode.pickup_tasks, mode.pickup_pace_s, proc)
            reps.append(
                {
                    "p50": harness.percentile(samples, 50),
                    "p95": harness.percentile(samples, 95),
                    "p99": harness.percentile(samples, 99),
                    "max": max(samples),
                }
            )
    return reps


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        base = measure(url, tmp, mode, "baseline")
        ours = measure(url, tmp, mode, "listener")
    result.details = {
        "tasks_per_rep": mode.pickup_tasks,
        "pace_ms": mode.pickup_pace_s * 1000,
        "listener_concurrency": DEFAULT_CONCURRENCY,
        "baseline_reps_ms": base,
        "listener_reps_ms": ours,
    }
    for stat in ("p50", "p95", "p99", "max"):
        value = harness.median([r[stat] for r in ours])
        baseline = harness.median([r[stat] for r in base])
        row = Row(
            metric=f"{stat} latency",
            value=round(value, 3),
            unit="ms",
            baseline=round(baseline, 3),
            baseline_name="LISTEN + UPDATE…RETURNING loop",
            ratio=harness.ratio(value, baseline),
        )
        if stat == "p50":
            row.target = "≤ 1.0 ms"
            row.met = value <= 1.0
        elif stat == "p99":
            row.target = "≤ 2.0 ms"
            row.met = value <= 2.0
        result.add(row)
    result.note = (
        f"{mode.pickup_tasks} tasks per rep, one every {mode.pickup_pace_s * 1000:g} ms; "
        f"median of {mode.reps} reps"
    )
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--baseline-worker"]:
    baseline_worker(sys.argv[2])
