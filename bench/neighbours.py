"""Issue 14 §1 at full size: a long success transaction never costs another task its lease.

Two listeners with TASK_LEASE_SECONDS=5 get, at the same moment, one 10 MB Goodreads import
(whose success transaction bulk-loads its books while it holds the task's row) and several CSV
exports of a large library. Before the heartbeat skipped locked rows, the one statement that
beats all of a listener's tasks waited on the import's row lock, the other leases expired and
healthy exports failed with "worker lost". Target: every task `success` at `attempts = 1`.
The baseline is the same exports run with no import beside them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from bench import harness
from bench.export import seed
from bench.harness import Mode, Result, Row
from bench.imports import goodreads_file
from bench.memory import import_data

NAME = "neighbours"
TITLE = "A 10 MB import beside CSV exports, lease 5 s: every task done at its first attempt"
LIBRARY_OWNER = 1
IMPORT_OWNER = 2
LEASE_SECONDS = 5
# mode → (books in the exported library, exports, import file size in MB)
SIZES = {"full": (1_300_000, 6, 10.0), "quick": (100_000, 4, 2.0), "smoke": (500, 2, 0.05)}
ROW_BYTES = 188  # what one row of bench.imports.goodreads_file takes


def _enqueue(conn: psycopg.Connection[Any], rows: list[tuple[str, str, int]]) -> list[int]:
    with conn.transaction():
        return [
            conn.execute(
                "INSERT INTO tasks (type, data, created_by) VALUES (%s, %s, %s) RETURNING id",
                row,
            ).fetchone()[0]  # type: ignore[index]
            for row in rows
        ]


def _wait_all(conn: psycopg.Connection[Any], ids: list[int], procs: list[harness.Proc]) -> float:
    started = time.perf_counter()

    def done() -> bool:
        for proc in procs:
            proc.check_alive()
        row = conn.execute(
            "SELECT count(*) FROM tasks WHERE id = ANY(%s) AND status IN ('success', 'failure')",
            (ids,),
        ).fetchone()
        return int(row[0]) == len(ids)  # type: ignore[index]

    harness.wait_for(done, 1800, f"{len(ids)} tasks", interval=0.05)
    return time.perf_counter() - started


def _outcome(conn: psycopg.Connection[Any], ids: list[int]) -> list[tuple[int, str, int, str]]:
    rows = conn.execute(
        "SELECT id, status, attempts, coalesce(error, '') FROM tasks WHERE id = ANY(%s) "
        "ORDER BY id",
        (ids,),
    ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in rows]


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    books, exports, import_mb = SIZES[mode.name]
    text, _ = goodreads_file(max(10, int(import_mb * 1e6 / ROW_BYTES)))
    export_rows = [("csv_export", json.dumps({"owner_id": LIBRARY_OWNER}), LIBRARY_OWNER)] * exports
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        with harness.connect(url) as conn:
            seed(conn, LIBRARY_OWNER, books)
        env = {
            **harness.process_env(url, tmp / "exports", log_level="INFO"),
            "TASK_LEASE_SECONDS": str(LEASE_SECONDS),
            "TASK_SWEEP_SECONDS": "1",
        }
        commands = [harness.listener_command(4), harness.listener_command(4)]
        with harness.processes(commands, env, tmp, NAME) as procs, harness.connect(url) as conn:
            harness.wait_for(
                lambda: all("listening" in p.log_path.read_text() for p in procs),
                60,
                "listeners",
            )
            alone_ids = _enqueue(conn, export_rows)
            alone_s = _wait_all(conn, alone_ids, procs)
            data = import_data(tmp / "exports", IMPORT_OWNER, text)
            together_ids = _enqueue(conn, [("goodreads_import", data, IMPORT_OWNER), *export_rows])
            together_s = _wait_all(conn, together_ids, procs)
            outcome = _outcome(conn, together_ids)
            logs = "".join(p.log_path.read_text(errors="replace") for p in procs)
    first_try = sum(1 for _, status, attempts, _ in outcome if (status, attempts) == ("success", 1))
    total = len(outcome)
    result.add(
        Row(
            f"tasks done at their first attempt (1 import of {len(text) / 1e6:.1f} MB, "
            f"{exports} exports of {books:,} books, 2 listeners, lease {LEASE_SECONDS} s)",
            first_try,
            "tasks",
            baseline=total,
            baseline_name="tasks",
            ratio=harness.ratio(first_try, total),
            target=f"= {total}",
            met=first_try == total,
        )
    )
    result.add(
        Row(
            "wall time of the mixed batch",
            round(together_s, 2),
            "s",
            round(alone_s, 2),
            "the exports alone",
            harness.ratio(together_s, alone_s),
        )
    )
    lost = logs.count('"lease lost"')
    result.add(Row('"lease lost" warnings logged', lost, "", target="= 0", met=lost == 0))
    result.details = {
        "tasks": [
            {"id": i, "status": s, "attempts": a, "error": e[:200] or None}
            for i, s, a, e in outcome
        ],
        "import_mb": round(len(text) / 1e6, 2),
        "library_books": books,
        "exports": exports,
        "reaped_warnings": logs.count("reaped tasks of lost workers"),
    }
    return result
