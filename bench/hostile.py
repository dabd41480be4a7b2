"""Issue 33 §1, §2, §6: hostile imports through a real listener (concurrency 10).

Each file is stored as an upload (as the API stores one) and imported by the listener; its peak
resident set (VmHWM, reset before each step via /proc/<pid>/clear_refs) is compared with its
resident set before the step:
- one row of millions of cells (30 MB), and a header of millions of names (20 MB): peak growth
  at most 4x the file (the import fails at a limit of one row, having read little of it);
- ten such one-row files at once: the listener's peak under 1 GB;
- an import of one book and 200,000 duplicates of it: what the task stores (`result` + `error`)
  at most 64 KB.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from bench import harness
from bench.harness import Mode, Result, Row
from bench.memory import import_data

NAME = "hostile"
TITLE = "Hostile imports: listener memory and the stored result's size"
OWNER = 1
PEAK_FACTOR = 4
TEN_TARGET_MB = 1024
RESULT_TARGET_KB = 64
MB = 1_000_000
# mode → (one-row file MB, header file MB, duplicates)
SIZES = {"full": (30.0, 20.0, 200_000), "quick": (10.0, 10.0, 50_000), "smoke": (2.0, 1.0, 2000)}
HEADER = "Title,Authors,ISBN/UID,Read Status,Star Rating\n"


def one_row(megabytes: float) -> str:
    """One row of millions of two-character cells after a StoryGraph header."""
    return HEADER + "x," * int(megabytes * MB / 2)


def long_header(megabytes: float) -> str:
    return "Title," + "c," * int(megabytes * MB / 2) + "\n"


def duplicates(n: int) -> str:
    return HEADER + "Dune,Frank Herbert,9780441172719,read,4\n" * (n + 1)


def _enqueue(conn: psycopg.Connection[tuple[object, ...]], data: str) -> int:
    row = conn.execute(
        "INSERT INTO tasks (type, data, created_by) VALUES ('storygraph_import', %s, %s) "
        "RETURNING id",
        (data, OWNER),
    ).fetchone()
    return int(row[0])  # type: ignore[index]


def _wait(
    conn: psycopg.Connection[tuple[object, ...]], task_ids: list[int], proc: harness.Proc
) -> list[str]:
    """The tasks' final statuses."""
    statuses: list[str] = []

    def finished() -> bool:
        nonlocal statuses
        proc.check_alive()
        rows = conn.execute(
            "SELECT status FROM tasks WHERE id = ANY(%s) ORDER BY id", (task_ids,)
        ).fetchall()
        statuses = [str(r[0]) for r in rows]
        return all(s in ("success", "failure") for s in statuses)

    harness.wait_for(finished, 600, "the imports", interval=0.01)
    return statuses


def _reset_peak(proc: harness.Proc) -> float:
    """Start VmHWM again from the current resident set; returns that, in MB."""
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
    time.sleep(0.05)
    return proc.memory_kb("VmRSS") * 1024 / MB


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    row_mb, header_mb, dupes = SIZES[mode.name]
    details: dict[str, object] = {}
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        folder = tmp / "exports"
        env = harness.process_env(url, folder)
        with (
            harness.processes([harness.listener_command(10)], env, tmp, NAME) as (proc,),
            harness.connect(url) as conn,
        ):
            warm = _enqueue(conn, import_data(folder, OWNER, HEADER + "Warm,A,,read,\n"))
            _wait(conn, [warm], proc)
            conn.execute("TRUNCATE books, notes, reading_sessions, field_values")

            for label, text in (
                (f"one row of {row_mb:g} MB", one_row(row_mb)),
                (f"a header of {header_mb:g} MB", long_header(header_mb)),
            ):
                file_mb = len(text) / MB
                data = import_data(folder, OWNER, text)
                before = _reset_peak(proc)
                statuses = _wait(conn, [_enqueue(conn, data)], proc)
                grown = proc.memory_kb("VmHWM") * 1024 / MB - before
                got = harness.ratio(grown, file_mb)
                result.add(
                    Row(
                        f"listener peak RSS growth importing {label}",
                        round(grown, 1),
                        "MB",
                        round(file_mb, 1),
                        "MB of the file",
                        got,
                        target=f"≤ {PEAK_FACTOR}x",
                        met=got is not None and got <= PEAK_FACTOR and statuses == ["failure"],
                        note="the import fails at a limit of one row, nothing imported",
                    )
                )

            text = one_row(row_mb)
            keys = [import_data(folder, OWNER, text) for _ in range(10)]
            before = _reset_peak(proc)
            statuses = _wait(conn, [_enqueue(conn, k) for k in keys], proc)
            peak = proc.memory_kb("VmHWM") * 1024 / MB
            result.add(
                Row(
                    f"listener peak RSS, ten {row_mb:g} MB one-row imports at once",
                    round(peak, 1),
                    "MB",
                    round(before, 1),
                    "RSS before",
                    target=f"< {TEN_TARGET_MB} MB",
                    met=peak < TEN_TARGET_MB and statuses == ["failure"] * 10,
                )
            )

            task_id = _enqueue(conn, import_data(folder, OWNER, duplicates(dupes)))
            statuses = _wait(conn, [task_id], proc)
            row = conn.execute(
                """SELECT coalesce(octet_length(r.result::text), 0)
                          + coalesce(octet_length(t.error), 0)
                     FROM tasks t LEFT JOIN task_results r ON r.task_id = t.id
                    WHERE t.id = %s""",
                (task_id,),
            ).fetchone()
            stored_kb = int(row[0]) / 1024  # type: ignore[index]
            result.add(
                Row(
                    f"stored result + error of an import of {dupes:,} duplicates",
                    round(stored_kb, 1),
                    "KB",
                    target=f"≤ {RESULT_TARGET_KB} KB",
                    met=stored_kb <= RESULT_TARGET_KB and statuses == ["success"],
                )
            )
            details["duplicate_import_result"] = json.loads(
                str(
                    conn.execute(
                        "SELECT result::text FROM task_results WHERE task_id = %s", (task_id,)
                    ).fetchone()[0]  # type: ignore[index]
                )
            )
    result.details = details
    return result
