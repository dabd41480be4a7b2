"""Issue 34 §1: a backup streams with flat memory.

One listener process (concurrency 4). Idle: its resident set (VmRSS) after a warm-up backup of a
small library, once the process is idle. Then a backup_export of a large library (every book
with notes, reading sessions and custom field values): its peak resident set (VmHWM, reset
before the task via /proc/<pid>/clear_refs) above idle must stay under 50 MB.
"""

from __future__ import annotations

import psycopg

from bench import harness
from bench.export import export_data, run_task, seed
from bench.harness import Mode, Result, Row
from bench.memory import _reset_peak, _settled_rss_mb

NAME = "backup"
TITLE = "Backup export: peak memory above idle for a large library"
OWNER = 1
WARM_OWNER = 2
TARGET_MB = 50
# mode → books in the backed-up library
SIZES = {"full": 1_000_000, "quick": 100_000, "smoke": 500}

# Two custom fields, and a value of each for every other book.
SEED_FIELDS = """
INSERT INTO fields (owner_id, name, field_type, show_order)
VALUES (%(owner)s, 'Shelf', 'text', 1), (%(owner)s, 'Loaned to', 'text', 2)"""
SEED_VALUES = """
INSERT INTO field_values (book_id, field_id, value)
SELECT b.id, f.id, f.name || ' ' || b.id
  FROM books b JOIN fields f ON f.owner_id = b.owner_id
 WHERE b.owner_id = %(owner)s AND b.id %% 2 = 0"""


def seed_library(conn: psycopg.Connection[tuple[object, ...]], owner: int, n: int) -> None:
    seed(conn, owner, n)
    conn.execute(SEED_FIELDS, {"owner": owner})
    conn.execute(SEED_VALUES, {"owner": owner})
    conn.execute("VACUUM ANALYZE fields, field_values")


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    books = SIZES[mode.name]
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        with harness.connect(url) as conn:
            seed_library(conn, OWNER, books)
            seed_library(conn, WARM_OWNER, 50)
        env = harness.process_env(url, tmp / "exports")
        with (
            harness.processes([harness.listener_command(4)], env, tmp, NAME) as (proc,),
            harness.connect(url) as conn,
        ):
            run_task(conn, "backup_export", export_data(WARM_OWNER), WARM_OWNER, proc)
            idle_mb = _settled_rss_mb(proc)
            _reset_peak(proc)
            run_task(conn, "backup_export", export_data(OWNER), OWNER, proc)
            peak_mb = proc.memory_kb("VmHWM") / 1024
            after_mb = _settled_rss_mb(proc)
        size_mb = sum(p.stat().st_size for p in (tmp / "exports").rglob("*.json")) / 1e6
    growth = peak_mb - idle_mb
    result.add(
        Row(
            f"peak RSS above idle during a backup of {books:,} books",
            round(growth, 1),
            "MB",
            round(idle_mb, 1),
            "idle RSS after warm-up",
            target=f"< {TARGET_MB} MB",
            met=growth < TARGET_MB,
        )
    )
    result.details = {
        "idle_rss_mb": round(idle_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "after_rss_mb": round(after_mb, 1),
        "backup_files_mb": round(size_mb, 1),
    }
    return result
