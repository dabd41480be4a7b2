"""4. Exports of one user's library (half of the books with a note) through a real listener.

Task time: from the task's commit until a client polling every 5 ms sees it succeed (pickup,
the export, its fsync and the publishing transaction). Baseline: `COPY (COPY_CSV) TO STDOUT`
— the very query csv_export runs — streamed into a file and fsynced, in this process: the time
PostgreSQL takes to produce the rows. HTML (the reading report), JSON and Goodreads exports are
timed against the same baseline.

Memory: one listener process per format; its peak RSS (VmHWM) after a tiny warm-up export is the
base, and the growth over it after each big export is what the target bounds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from booklogr_tasks.jobs import known_types
from booklogr_tasks.jobs.exports.csv import COPY_CSV

from bench import harness
from bench.harness import Mode, Result, Row

NAME = "export"
TITLE = "Exports vs COPY of the same query"
OWNER = 1
BIG_OWNER = 2
TINY_OWNER = 3
FORMATS = ("csv", "html", "json", "goodreads")
TIME_TARGET = 1.3
RSS_TARGET_MB = 50

SEED_BOOKS = """
INSERT INTO books (title, isbn, description, author, reading_status, current_page, total_pages,
                   rating, owner_id, created_on)
SELECT 'Book ' || g || ', volume ' || (g %% 7), lpad(g::text, 13, '9780'),
       CASE WHEN g %% 3 = 0 THEN 'A description, with "quotes"' || chr(10) || 'and two lines' END,
       'Author ' || (g %% 1000),
       (ARRAY['Read', 'Currently reading', 'To be read', 'Did not finish'])[g %% 4 + 1],
       g %% 300, 300 + g %% 200, CASE WHEN g %% 5 > 0 THEN (g %% 5)::numeric END, %(owner)s,
       timestamp '2015-01-01' + g * interval '7 minutes'
  FROM generate_series(1, %(n)s) AS g"""
SEED_NOTES = """
INSERT INTO notes (book_id, content, quote_page, visibility)
SELECT id, 'A note on ' || title || ', with "quotes"', id %% 300,
       CASE WHEN id %% 3 = 0 THEN 'public' ELSE 'hidden' END
  FROM books WHERE owner_id = %(owner)s AND id %% 2 = 0"""
# Two thirds of the read books were finished in BookLogr (the report's years, Date Read).
SEED_SESSIONS = """
INSERT INTO reading_sessions (book_id, status, start_date, end_date)
SELECT id, 'Read', created_on, created_on + interval '20 days'
  FROM books WHERE owner_id = %(owner)s AND reading_status = 'Read' AND id %% 3 > 0"""


def seed(conn: psycopg.Connection[tuple[object, ...]], owner: int, n: int) -> None:
    conn.execute(SEED_BOOKS, {"owner": owner, "n": n})
    conn.execute(SEED_NOTES, {"owner": owner})
    conn.execute(SEED_SESSIONS, {"owner": owner})
    conn.execute("VACUUM ANALYZE books, notes, reading_sessions")


def copy_to_file(url: str, owner: int, path: Path) -> float:
    """The baseline: PostgreSQL formats the CSV, Python writes the bytes and fsyncs."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with open(path, "wb", buffering=1 << 20) as out, conn.cursor() as cur:
            with cur.copy(COPY_CSV, {"owner": owner}) as copy:
                for chunk in copy:
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return time.perf_counter() - started


def run_task(
    conn: psycopg.Connection[tuple[object, ...]],
    task_type: str,
    data: str,
    owner: int,
    proc: harness.Proc,
) -> float:
    """Enqueue one task and wait for its success; seconds from commit to seen done."""
    row = conn.execute(
        "INSERT INTO tasks (type, data, created_by) VALUES (%s, %s, %s) RETURNING id",
        (task_type, data, owner),
    ).fetchone()
    started = time.perf_counter()
    task_id = row[0]  # type: ignore[index]
    status = ""

    def finished() -> bool:
        nonlocal status
        proc.check_alive()
        found = conn.execute("SELECT status, error FROM tasks WHERE id = %s", (task_id,)).fetchone()
        status = str(found[0])  # type: ignore[index]
        if status == "failure":
            raise RuntimeError(f"{task_type} task failed: {found[1]}")  # type: ignore[index]
        return status == "success"

    harness.wait_for(finished, 600, f"{task_type} task {task_id}", interval=0.005)
    return time.perf_counter() - started


def export_data(owner: int) -> str:
    return f'{{"owner_id": {owner}}}'


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    formats = [f for f in FORMATS if f"{f}_export" in known_types()]
    if not mode.extra_formats:
        formats = ["csv"]
    details: dict[str, object] = {"books": mode.export_books, "big_books": mode.export_big_books}
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        with harness.connect(url) as conn:
            seed(conn, OWNER, mode.export_books)
            seed(conn, TINY_OWNER, 10)
            if mode.export_big_books:
                seed(conn, BIG_OWNER, mode.export_big_books)
        copy_to_file(url, OWNER, tmp / "warmup.csv")
        baseline_runs: list[float] = []
        for fmt in formats:
            env = harness.process_env(url, tmp / "exports")
            listener = harness.processes([harness.listener_command(1)], env, tmp, fmt)
            with listener as (proc,), harness.connect(url) as conn:
                run_task(conn, f"{fmt}_export", export_data(TINY_OWNER), TINY_OWNER, proc)
                idle_kb = proc.memory_kb("VmHWM")
                runs = []
                for _ in range(mode.reps):
                    baseline_runs.append(copy_to_file(url, OWNER, tmp / "copy.csv"))
                    runs.append(run_task(conn, f"{fmt}_export", export_data(OWNER), OWNER, proc))
                grown_mb = (proc.memory_kb("VmHWM") - idle_kb) / 1024
                big_mb = None
                if mode.export_big_books:
                    run_task(conn, f"{fmt}_export", export_data(BIG_OWNER), BIG_OWNER, proc)
                    big_mb = (proc.memory_kb("VmHWM") - idle_kb) / 1024
            baseline = harness.median(baseline_runs)
            ours = harness.median(runs)
            got = harness.ratio(ours, baseline)
            result.add(
                Row(
                    f"{fmt}_export of {mode.export_books:,} books",
                    round(ours, 3),
                    "s",
                    round(baseline, 3),
                    "COPY (csv query) TO STDOUT → file",
                    got,
                    target=f"≤ {TIME_TARGET}x" if fmt == "csv" else None,
                    met=(got is not None and got <= TIME_TARGET) if fmt == "csv" else None,
                )
            )
            for books, mb in ((mode.export_books, grown_mb), (mode.export_big_books, big_mb)):
                if books is None or mb is None:
                    continue
                result.add(
                    Row(
                        f"{fmt}_export peak RSS growth, {books:,} books",
                        round(mb, 1),
                        "MB",
                        round(idle_kb / 1024, 1),
                        "listener's peak RSS after a 10-book export",
                        target=f"< {RSS_TARGET_MB} MB",
                        met=mb < RSS_TARGET_MB,
                    )
                )
            details[f"{fmt}_runs_s"] = [round(r, 3) for r in runs]
        details["copy_runs_s"] = [round(r, 3) for r in baseline_runs]
    missing = [f for f in FORMATS if f not in formats]
    result.details = details
    result.note = (
        f"median of {mode.reps} reps, each export against a COPY run just before it"
        + (f"; 1M-book RSS only in full mode ({mode.export_big_books or 'skipped'})")
        + (f"; not available/skipped: {', '.join(missing)}" if missing else "")
    )
    return result
