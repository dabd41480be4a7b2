"""core.threads: every call submitted runs, also the ones queued at shutdown."""

from __future__ import annotations

import threading

import pytest
from booklogr_tasks.core import threads as threads_module
from booklogr_tasks.core.threads import Threads


def test_shutdown_runs_every_call_already_submitted() -> None:
    threads = Threads(2, "test")
    gate = threading.Event()
    ran: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        gate.wait(10)  # both threads busy: the rest wait in the queue
        with lock:
            ran.append(n)

    for n in range(20):
        threads.submit(lambda n=n: call(n))
    gate.set()
    threads.shutdown()
    assert sorted(ran) == list(range(20))
    assert not any(t.is_alive() for t in threads._threads)


def test_calls_run_on_at_most_the_given_number_of_threads() -> None:
    threads = Threads(3, "test")
    names: set[str] = set()
    lock = threading.Lock()

    def call() -> None:
        with lock:
            names.add(threading.current_thread().name)

    for _ in range(50):
        threads.submit(call)
    threads.shutdown()
    assert names and names <= {"test_0", "test_1", "test_2"}


def test_a_pool_that_never_ran_anything_starts_no_thread() -> None:
    threads = Threads(4, "test")
    threads.shutdown()
    assert not any(t.is_alive() or t.ident for t in threads._threads)


def test_a_call_submitted_after_shutdown_is_refused() -> None:
    threads = Threads(1, "test")
    threads.submit(lambda: None)
    threads.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        threads.submit(lambda: None)


class _Recorder:
    """Stands in for the Logger: keeps what `exception` was called with."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.Lock()

    def exception(self, message: str, extra: dict[str, object]) -> None:
        with self._lock:
            self.lines.append((message, extra))


def test_a_call_that_raises_is_logged_with_its_task_and_the_thread_serves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(threads_module, "logger", recorder)
    threads = Threads(3, "job")
    # Each of the three threads takes one raising call: none may start before all three have.
    together = threading.Barrier(3, timeout=10)

    def boom() -> None:
        together.wait()
        raise ValueError("the job broke")

    for task_id in (11, 12, 13):
        threads.submit(boom, task_id=task_id)

    def no_task() -> None:
        raise KeyError("a call that runs no task")

    threads.submit(no_task)

    # All three threads still serve: three calls that only finish when three run at once.
    again = threading.Barrier(3, timeout=10)
    names: set[str] = set()
    lock = threading.Lock()

    def meet() -> None:
        again.wait()
        with lock:
            names.add(threading.current_thread().name)

    for _ in range(3):
        threads.submit(meet)
    threads.shutdown()
    assert not again.broken and names == {"job_0", "job_1", "job_2"}
    assert sorted(str(extra.get("task_id")) for _, extra in recorder.lines) == [
        "11",
        "12",
        "13",
        "None",
    ]
    assert all(extra["threads"] == "job" for _, extra in recorder.lines)
