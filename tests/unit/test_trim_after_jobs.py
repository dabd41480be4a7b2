"""Memory is trimmed after jobs that used much CPU, not after jobs that only waited."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from booklogr_tasks.worker import memory
from booklogr_tasks.worker.invokers import InProcessInvoker
from booklogr_tasks.worker.lease import Lease


class _Runner:
    """Runs a task as `work(task)`; what the invoker needs of a Runner."""

    def __init__(self, work: Any) -> None:
        self.work = work

    def hold(self, task: Any) -> Lease:
        return Lease(task_id=1, attempt=1)

    def execute(self, task: Any, lease: Any) -> str:
        self.work(task)
        return "success"


def _trims_after(work: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    trims: list[float] = []

    def release() -> bool:
        trims.append(time.monotonic())
        return True

    monkeypatch.setattr(memory, "release_memory", release)
    done = threading.Event()
    invoker = InProcessInvoker(_Runner(work), concurrency=1)  # type: ignore[arg-type]
    invoker.on_done = done.set
    try:
        invoker.start(SimpleNamespace(id=1))  # type: ignore[arg-type]
        assert done.wait(10)
    finally:
        invoker._threads.shutdown()
    return len(trims)


def test_a_job_that_waited_is_not_followed_by_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ten small exports side by side each wait longer than this for the disk and the GIL.
    waited = 3 * memory.TRIM_AFTER_CPU_SECONDS
    assert _trims_after(lambda task: time.sleep(waited), monkeypatch) == 0


def test_a_job_that_worked_is_followed_by_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(task: Any) -> None:
        started = time.thread_time()
        while time.thread_time() - started < 1.5 * memory.TRIM_AFTER_CPU_SECONDS:
            sum(range(1000))

    assert _trims_after(busy, monkeypatch) == 1
