"""6. Claim speed with few vs many finished tasks in the table.

Finished rows are filled with generate_series and the table is VACUUM ANALYZEd; then fresh
tasks are claimed with tasks.claim_batch (10 at a time) and tasks.claim_task (by id), each claim
in its own committed transaction on a connection like the listener's claim connection
(synchronous_commit off), so the figure is the claim's own cost rather than the disk's flush
time. A CHECKPOINT after the fill keeps the background flush of a million new rows out of the
measurement. Should stay flat: the claims read the partial index of fresh rows only.
"""

from __future__ import annotations

import time

from booklogr_tasks.db import pool as db
from booklogr_tasks.db import tasks

from bench import harness
from bench.harness import Mode, Result, Row

NAME = "claim"
TITLE = "Claim speed vs finished tasks in the table"
TYPES = ["bench_noop"]
TARGET = 1.2
BATCH = 10

FILL = """
INSERT INTO tasks (type, data, status, worker, created_by, updated_on, attempts)
SELECT 'bench_noop', '{"owner_id": 1}', 'success', 'old', 1, now(), 1
  FROM generate_series(1, %s)"""
FRESH = """
INSERT INTO tasks (type, data, created_by)
SELECT 'bench_noop', '{"owner_id": 1}', 1 FROM generate_series(1, %s) RETURNING id"""
CLOSE = "UPDATE tasks SET status = 'success' WHERE status = 'started'"


def claim_batches(conn: db.Conn, n: int, sizes: list[int]) -> list[float]:
    """Per-call ms of claiming n fresh tasks 10 at a time; `sizes` gets each batch's size."""
    conn.execute(FRESH, (n,))
    conn.commit()
    per_call: list[float] = []
    while True:
        started = time.perf_counter()
        claimed = tasks.claim_batch(conn, "bench", TYPES, BATCH)
        conn.commit()
        if not claimed:
            break
        per_call.append((time.perf_counter() - started) * 1000)
        sizes.append(len(claimed))
    conn.execute(CLOSE)
    conn.commit()
    return per_call


def claim_by_id(conn: db.Conn, n: int) -> list[float]:
    ids = [int(r["id"]) for r in conn.execute(FRESH, (n,)).fetchall()]
    conn.commit()
    per_call: list[float] = []
    for task_id in ids:
        started = time.perf_counter()
        claimed = tasks.claim_task(conn, task_id, "bench", TYPES)
        conn.commit()
        per_call.append((time.perf_counter() - started) * 1000)
        assert claimed is not None
    conn.execute(CLOSE)
    conn.commit()
    return per_call


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    small, big = mode.claim_finished
    measured: dict[int, dict[str, float]] = {}
    sizes: list[int] = []
    with harness.temp_database(NAME) as url, db.connect(url, durable=False) as conn:
        have = 0
        for size in (small, big):
            conn.execute(FILL, (size - have,))
            conn.commit()
            have = size
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE tasks")
            conn.execute("CHECKPOINT")
            conn.autocommit = False
            claim_batches(conn, 100, [])  # warm-up
            batch = [
                harness.median(claim_batches(conn, mode.claim_fresh, sizes))
                for _ in range(mode.reps)
            ]
            by_id = [harness.median(claim_by_id(conn, mode.claim_fresh)) for _ in range(mode.reps)]
            measured[size] = {"batch": harness.median(batch), "by_id": harness.median(by_id)}
    for kind, label in (("batch", "claim_batch(10)"), ("by_id", "claim_task(id)")):
        ours, base = measured[big][kind], measured[small][kind]
        got = harness.ratio(ours, base)
        result.add(
            Row(
                f"{label} with {big:,} finished tasks",
                round(ours, 3),
                "ms/claim",
                round(base, 3),
                f"same with {small:,} finished",
                got,
                target=f"≤ {TARGET}x",
                met=got is not None and got <= TARGET,
            )
        )
    result.add(
        Row(
            f"largest batch returned by claim_batch(limit={BATCH})",
            max(sizes),
            "tasks",
            target=f"≤ {BATCH}",
            met=max(sizes) <= BATCH,
            note="more than the limit means the claim ignores free slots",
        )
    )
    result.details = {
        "batch_sizes_seen": sorted(set(sizes)),
        "fresh_per_rep": mode.claim_fresh,
        "ms_per_claim": {str(k): v for k, v in measured.items()},
    }
    result.note = (
        f"{mode.claim_fresh} fresh tasks per rep, each claim its own transaction; "
        f"median of {mode.reps} reps" + ("" if big >= 1_000_000 else "; 1M finished in full mode")
    )
    return result
