"""core.threads: every call submitted runs, also the ones queued at shutdown."""

from __future__ import annotations

import threading

import pytest
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
