"""Job types only the benchmarks register (BOOKLOGR_TASKS_JOB_MODULES=bench.jobs).

`bench_probe` writes "<task id> <CLOCK_MONOTONIC ns>" the moment its function is entered, to the
file named by BENCH_PROBE_FILE: an O_APPEND write of one short line is atomic, cheap, and needs no
database round trip that would load the system being measured.
"""

from __future__ import annotations

import os
import threading
import time

from booklogr_tasks.core.models import OwnerPayload
from booklogr_tasks.jobs import JobContext, JobSpec, Outcome, register

PROBE_ENV = "BENCH_PROBE_FILE"

_probe_fd: int | None = None
_probe_lock = threading.Lock()


def probe_fd() -> int:
    global _probe_fd
    with _probe_lock:
        if _probe_fd is None:
            _probe_fd = os.open(os.environ[PROBE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return _probe_fd


def record_entry(task_id: int, entered_ns: int) -> None:
    os.write(probe_fd(), f"{task_id} {entered_ns}\n".encode())


def noop(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    return Outcome(result=None)


def probe(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    record_entry(ctx.task.id, time.clock_gettime_ns(time.CLOCK_MONOTONIC))
    return Outcome(result=None)


def read_probe_file(path: str) -> dict[int, int]:
    """task id → entry time (ns) as written by record_entry."""
    entered: dict[int, int] = {}
    with open(path) as lines:
        for line in lines:
            task_id, at = line.split()
            entered[int(task_id)] = int(at)
    return entered


register(
    JobSpec(task_type="bench_noop", payload_model=OwnerPayload, run=noop, summary="bench: nothing")
)
register(
    JobSpec(
        task_type="bench_probe",
        payload_model=OwnerPayload,
        run=probe,
        summary="bench: record when the job function was entered",
    )
)
