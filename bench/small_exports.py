"""Small real exports: what a busy BookLogr install sees — many users, a few dozen books each,
all asking for a CSV export at once.

Each rep enqueues one `csv_export` task per user (one transaction) and measures tasks / (last
task finished - backlog committed), both on the server's clock. Listeners run at their default
settings (`booklogr-tasks listen`, no flags), 1 and 2 processes.

Baseline (`python -m bench.small_exports --baseline-worker URL FOLDER`): a hand-written worker
doing the same work per task in one transaction — take the oldest fresh task `FOR UPDATE SKIP
LOCKED`, COPY the owner's books (the very query csv_export runs) into a file, fsync it, rename it
into place and fsync the folder, insert the export's row and the `files` row that lists it in
BookLogr's web app, mark the task a success, commit;
wait for a notification when the queue is empty.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import psycopg
from booklogr_tasks.jobs.exports.csv import COPY_CSV

from bench import harness
from bench.harness import Mode, Result

NAME = "small_exports"
TITLE = "Many small csv_exports at default settings"
BOOKS_PER_USER = 20
TARGET = 1.0
WARMUP_USERS = 50

SEED = """
INSERT INTO books (title, isbn, author, reading_status, current_page, total_pages, rating,
                   owner_id)
SELECT 'Book ' || b || ' of reader ' || u, lpad((u * 100 + b)::text, 13, '9780'),
       'Author ' || (b %% 7),
       (ARRAY['Read', 'Currently reading', 'To be read', 'Did not finish'])[b %% 4 + 1],
       b * 10, 300, CASE WHEN b %% 3 > 0 THEN (b %% 5)::numeric END, u
  FROM generate_series(1, %(users)s::int) AS u, generate_series(1, %(books)s::int) AS b"""
SEED_NOTES = """
INSERT INTO notes (book_id, content, quote_page)
SELECT id, 'A note on ' || title, id % 300 FROM books WHERE id % 4 = 0"""
BACKLOG = """
INSERT INTO tasks (type, data, created_by)
SELECT 'csv_export', json_build_object('owner_id', u)::text, u
  FROM generate_series(%(first)s::int, %(last)s::int) AS u"""

TAKE = """
SELECT id, data FROM tasks WHERE status = 'fresh' AND type = 'csv_export'
 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"""
# The export's row and its line in BookLogr's `files` (which lists it in the web app), as the
# listener writes them.
RECORD = """
WITH export AS (
    INSERT INTO exports (format, filename, owner_id, task_id)
    VALUES ('csv', %(name)s, %(owner)s, %(task)s)
)
INSERT INTO files (filename, owner_id, created_at)
VALUES (%(name)s, %(owner)s, now() AT TIME ZONE 'UTC')"""
DONE = "UPDATE tasks SET status = 'success', updated_on = now() WHERE id = %s"


def baseline_worker(url: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN task_created")
        while True:
            with conn.transaction():
                row = conn.execute(TAKE).fetchone()
                if row is not None:
                    task_id, data = row
                    owner = int(json.loads(data)["owner_id"])
                    final = folder / f"{owner}-{task_id}.csv"
                    temp = final.with_suffix(".part")
                    with open(temp, "wb") as out, conn.cursor() as cur:
                        with cur.copy(COPY_CSV, {"owner": owner}) as copy:
                            for chunk in copy:
                                out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(temp, final)
                    fd = os.open(folder, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    conn.execute(RECORD, {"name": final.name, "owner": owner, "task": task_id})
                    conn.execute(DONE, (task_id,))
            if row is None:
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    pass


def drain(
    conn: psycopg.Connection[tuple[object, ...]], first: int, last: int, procs: list[harness.Proc]
) -> float:
    """Enqueue one export per user first..last and wait for all; tasks per second."""
    harness.empty_queue(conn, "tasks, exports, files")
    with conn.transaction():
        conn.execute(BACKLOG, {"first": first, "last": last})
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    committed: datetime = row[0]  # type: ignore[assignment]
    n = last - first + 1

    def drained() -> bool:
        for proc in procs:
            proc.check_alive()
        failed = harness.count_status(conn, "failure", "csv_export")
        if failed:
            raise RuntimeError(f"{failed} csv_export tasks failed")
        return harness.count_status(conn, "success", "csv_export") >= n

    harness.wait_for(drained, 300, f"{n} exports to finish", interval=0.05)
    end = conn.execute("SELECT max(updated_on) FROM tasks").fetchone()
    assert end is not None
    finished: datetime = end[0]  # type: ignore[assignment]
    return n / (finished - committed).total_seconds()


def measure(url: str, tmp: Path, mode: Mode, system: str, processes: int, rep: int) -> float:
    """One rep: start the processes, warm them up, time one drain, stop them."""
    exports = tmp / f"exports-{system}-{processes}-{rep}"
    env = harness.process_env(url, exports)
    command = (
        harness.listener_command(None)
        if system == "listener"
        else [sys.executable, "-m", "bench.small_exports", "--baseline-worker", url, str(exports)]
    )
    label = f"{system}-{processes}-{rep}"
    users = mode.small_exports
    with (
        harness.processes([command] * processes, env, tmp, label) as procs,
        harness.connect(url) as conn,
    ):
        drain(conn, 1, WARMUP_USERS, procs)
        return drain(conn, 1, users, procs)


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    runs: dict[str, list[float]] = {}
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        with harness.connect(url) as conn:
            conn.execute(SEED, {"users": mode.small_exports, "books": BOOKS_PER_USER})
            conn.execute(SEED_NOTES)
            conn.execute("VACUUM ANALYZE books, notes")
        # Reps alternate between the two systems: the cost of creating a file drifts within a
        # run (ext4 skips inodes freed in the last minutes when it allocates one: creating a
        # file cost 0.8 ms of CPU after other benchmarks had deleted thousands), and
        # alternating spreads that drift over both instead of charging it to whichever ran
        # first.
        for processes in (1, 2):
            for rep in range(mode.reps):
                for system in ("baseline", "listener"):
                    rate = measure(url, tmp, mode, system, processes, rep)
                    runs.setdefault(f"{system}-{processes}", []).append(rate)
    harness.rates_against_baseline(
        result, runs, "hand-written worker, one transaction per export", TARGET
    )
    result.details = {
        "users": mode.small_exports,
        "books_per_user": BOOKS_PER_USER,
        "reps_tasks_per_s": {k: [round(v) for v in vs] for k, vs in runs.items()},
    }
    result.note = (
        f"{mode.small_exports} csv_export tasks per rep ({BOOKS_PER_USER} books each, a note on "
        f"every 4th), listeners at default settings; median of {mode.reps} reps"
    )
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--baseline-worker"]:
    baseline_worker(sys.argv[2], Path(sys.argv[3]))
