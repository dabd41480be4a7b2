"""What every benchmark shares: modes, throwaway databases, listener processes, statistics and
result rows.

Absolute numbers drift on shared machines, so every benchmark measures its own baseline in the
same run and reports the ratio; a target is judged on the ratio (or on an absolute bound where
the issue gives one).
"""

from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from booklogr_tasks.db.migrate import migrate
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Mode:
    """How big and how often. `full` is what the issue specifies; `quick` keeps `make
    bench-quick` under a minute; `smoke` only proves the code runs (tests)."""

    name: str
    reps: int
    pickup_tasks: int
    pickup_pace_s: float
    throughput_tasks: int
    enqueue_tasks: int
    export_books: int
    export_big_books: int | None  # the RSS growth check; None skips it
    import_rows: int
    one_by_one_rows: int
    claim_finished: tuple[int, int]
    claim_fresh: int
    small_exports: int
    log_levels: tuple[str, ...] = ("WARNING",)
    extra_formats: bool = True


MODES = {
    "full": Mode(
        name="full",
        reps=3,
        pickup_tasks=300,
        pickup_pace_s=0.01,
        throughput_tasks=5000,
        enqueue_tasks=5000,
        export_books=100_000,
        export_big_books=1_000_000,
        import_rows=100_000,
        one_by_one_rows=10_000,
        claim_finished=(1000, 1_000_000),
        claim_fresh=2000,
        small_exports=2000,
        log_levels=("WARNING", "INFO"),
    ),
    "quick": Mode(
        name="quick",
        reps=3,
        pickup_tasks=200,
        pickup_pace_s=0.005,
        throughput_tasks=2000,
        enqueue_tasks=1000,
        export_books=20_000,
        export_big_books=None,
        import_rows=10_000,
        one_by_one_rows=1000,
        claim_finished=(1000, 100_000),
        claim_fresh=500,
        small_exports=500,
    ),
    "smoke": Mode(
        name="smoke",
        reps=1,
        pickup_tasks=10,
        pickup_pace_s=0.005,
        throughput_tasks=50,
        enqueue_tasks=20,
        export_books=200,
        export_big_books=None,
        import_rows=100,
        one_by_one_rows=20,
        claim_finished=(100, 1000),
        claim_fresh=30,
        small_exports=20,
        extra_formats=False,
    ),
}


# --- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measurement, its baseline, and the target it is judged by."""

    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    name: str
    title: str
    status: str = "ok"  # ok | not available | error
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    seconds: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "note": self.note,
            "seconds": round(self.seconds, 2),
            "rows": [r.as_dict() for r in self.rows],
            "details": self.details,
        }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def rates_against_baseline(
    result: Result, runs: dict[str, list[float]], baseline_name: str, target: float
) -> None:
    """One row per process count: the listeners' median tasks/s (`listener-N` runs) against the
    baseline's (`baseline-N`), judged by `target`."""
    for processes in (1, 2):
        ours = median(runs[f"listener-{processes}"])
        base = median(runs[f"baseline-{processes}"])
        got = ratio(ours, base)
        result.add(
            Row(
                metric=f"{processes} process{'es' if processes > 1 else ''}",
                value=round(ours),
                unit="tasks/s",
                baseline=round(base),
                baseline_name=baseline_name,
                ratio=got,
                target=f"≥ {target}x",
                met=got is not None and got >= target,
            )
        )


# --- statistics ----------------------------------------------------------------------------------


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile: an observed value, never an interpolation."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def now_ns() -> int:
    """CLOCK_MONOTONIC is system-wide on Linux: comparable between the processes of a run."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --- databases -----------------------------------------------------------------------------------


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or LOCAL_SERVER


def with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@contextmanager
def temp_database(label: str) -> Iterator[str]:
    """A new, migrated database for one benchmark, dropped afterwards."""
    server = server_url()
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_db(server, name)
    try:
        migrate(url)
        yield url
    finally:
        from booklogr_tasks.db.pool import close_pools

        close_pools()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def empty_queue(conn: psycopg.Connection[Any], tables: str = "tasks") -> None:
    """TRUNCATE between reps while listeners run. Their housekeeping (retention deleting old
    finished tasks) may hold a lock the TRUNCATE needs while waiting for one it holds; the
    database then cancels one of the two, and when that is the TRUNCATE it is tried again."""
    for attempt in range(5):
        try:
            conn.execute(f"TRUNCATE {tables} CASCADE")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 4:
                raise
            time.sleep(0.1)


def count_status(conn: psycopg.Connection[Any], status: str, task_type: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM tasks WHERE status = %s AND type = %s", (status, task_type)
    ).fetchone()
    assert row is not None
    return int(row[0])


# --- processes -----------------------------------------------------------------------------------


def process_env(url: str, export_folder: Path, log_level: str = "WARNING") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": url,
            "BOOKLOGR_TASKS_JOB_MODULES": "bench.jobs",
            "EXPORT_FOLDER": str(export_folder),
            "POWERTOOLS_LOG_LEVEL": log_level,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


class Proc:
    """A child process that is always stopped: SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"process {self.proc.args!r} exited with {self.proc.returncode}:\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )

    def memory_kb(self, field_name: str) -> int:
        """VmHWM (peak resident set) or VmRSS in kB, summed over the process and its children
        (a server's worker processes)."""
        root = psutil.Process(self.pid)
        return sum(_status_kb(p.pid, field_name) for p in [root, *root.children(recursive=True)])

    def stop(self) -> None:
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.alive():
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str], logs: Path, label: str
) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        for i, args in enumerate(commands):
            procs.append(Proc(args, env, logs / f"{label}-{i}.log"))
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def listener_command(concurrency: int | None) -> list[str]:
    """`booklogr-tasks listen`; with no concurrency, at its default (what users run)."""
    command = [sys.executable, "-m", "booklogr_tasks.cli", "listen"]
    return command if concurrency is None else [*command, "--concurrency", str(concurrency)]


@contextmanager
def scratch(label: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as folder:
        yield Path(folder)


# --- the machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with connect(server_url()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg = str(row[0]) if row else "unknown"
        settings = {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "shared_buffers")
        }
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "postgresql": pg,
        "postgresql_settings": settings,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")
