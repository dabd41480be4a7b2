"""Issue 14 §5: listener memory after jobs, and at its peak during a 10 MB import.

One listener process (concurrency 4). Idle: its resident set (VmRSS) after a warm-up import
and export, once the process is idle. Then a Goodreads import of a 10 MB file: its peak
(VmHWM, reset before the task via /proc/<pid>/clear_refs) above idle must stay under 4x the file
size, and after the import and after a large CSV export the resident set must come back to
within 50 MB of idle.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from bench import harness
from bench.export import run_task, seed
from bench.harness import Mode, Result, Row
from bench.imports import goodreads_file

NAME = "memory"
TITLE = "Listener memory: peak during a 10 MB import, and back to idle after jobs"
OWNER = 1
EXPORT_OWNER = 2
AFTER_TARGET_MB = 50
PEAK_FACTOR = 4
# mode → (import file size in MB, books in the exported library)
SIZES = {"full": (10.0, 1_000_000), "quick": (10.0, 100_000), "smoke": (0.05, 500)}
ROW_BYTES = 188


def import_data(export_folder: Path, owner: int, text: str) -> str:
    """An import task's data: the file as a stored upload where the package has uploads (the
    way the API creates imports: the file stays out of `tasks.data`), else inline."""
    from booklogr_tasks import storage
    from booklogr_tasks.storage.local import LocalFolderStore

    upload_key = getattr(storage.base, "upload_key", None)
    store = LocalFolderStore(export_folder)
    save = getattr(store, "save_upload", None)
    if upload_key is None or save is None:
        return json.dumps({"owner_id": owner, "csv": text})
    key = upload_key(owner)
    body = text.encode()
    save(key, io.BytesIO(body), len(body) + 1)
    return json.dumps({"owner_id": owner, "file": key})


def _settled_rss_mb(proc: harness.Proc) -> float:
    """The resident set once the job's thread has let go of its memory: the smallest of a
    few samples over a second (a job's end and the memory's release are not one instant)."""
    samples = []
    for _ in range(10):
        samples.append(proc.memory_kb("VmRSS") / 1024)
        time.sleep(0.1)
    return min(samples)


def _reset_peak(proc: harness.Proc) -> None:
    """Start VmHWM again from the current resident set (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    import_mb, books = SIZES[mode.name]
    text, _ = goodreads_file(max(10, int(import_mb * 1e6 / ROW_BYTES)))
    file_mb = len(text.encode()) / 1e6
    warm_text, _ = goodreads_file(50)
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        with harness.connect(url) as conn:
            seed(conn, EXPORT_OWNER, books)
        env = harness.process_env(url, tmp / "exports")
        with (
            harness.processes([harness.listener_command(4)], env, tmp, NAME) as (proc,),
            harness.connect(url) as conn,
        ):
            run_task(
                conn, "goodreads_import", json.dumps({"owner_id": 3, "csv": warm_text}), 3, proc
            )
            run_task(conn, "csv_export", json.dumps({"owner_id": 3}), 3, proc)
            idle_mb = _settled_rss_mb(proc)
            big_import = import_data(tmp / "exports", OWNER, text)
            _reset_peak(proc)
            run_task(conn, "goodreads_import", big_import, OWNER, proc)
            peak_mb = proc.memory_kb("VmHWM") / 1024
            after_import_mb = _settled_rss_mb(proc)
            run_task(conn, "csv_export", json.dumps({"owner_id": EXPORT_OWNER}), EXPORT_OWNER, proc)
            after_export_mb = _settled_rss_mb(proc)
    peak_growth = peak_mb - idle_mb
    result.add(
        Row(
            f"peak RSS above idle during a {file_mb:.1f} MB import",
            round(peak_growth, 1),
            "MB",
            round(file_mb, 1),
            "the file's size",
            harness.ratio(peak_growth, file_mb),
            target=f"< {PEAK_FACTOR}x",
            met=peak_growth < PEAK_FACTOR * file_mb,
        )
    )
    for what, after in (
        (f"the {file_mb:.1f} MB import", after_import_mb),
        (f"a CSV export of {books:,} books", after_export_mb),
    ):
        grown = after - idle_mb
        result.add(
            Row(
                f"RSS above idle after {what}",
                round(grown, 1),
                "MB",
                round(idle_mb, 1),
                "idle RSS after warm-up",
                target=f"≤ {AFTER_TARGET_MB} MB",
                met=grown <= AFTER_TARGET_MB,
            )
        )
    result.details = {
        "idle_rss_mb": round(idle_mb, 1),
        "import_peak_rss_mb": round(peak_mb, 1),
        "after_import_rss_mb": round(after_import_mb, 1),
        "after_export_rss_mb": round(after_export_mb, 1),
        "import_file_mb": round(file_mb, 2),
    }
    return result
