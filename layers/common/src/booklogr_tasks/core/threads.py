"""A fixed set of threads running the calls put in one queue, in order.

Not concurrent.futures.ThreadPoolExecutor: nobody here needs its Future. Its submit builds one
(a Condition and an RLock) and takes two locks per call, and handing the result to asyncio wraps
that Future in another. Both show in profiles of the hot paths that use this instead: a
listener's claiming thread (submit was half of its CPU working off 5,000 no-op tasks) and the
API's hand-over of each request to a handler thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Threads:
    def __init__(
        self, count: int, name: str, initializer: Callable[[], None] | None = None
    ) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._initializer = initializer
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        self._started = False
        self._closed = False
        self._start_lock = threading.Lock()

    def submit(self, call: Callable[[], None]) -> None:
        """RuntimeError after shutdown (as ThreadPoolExecutor's): nothing would run the call."""
        if self._closed:
            raise RuntimeError("cannot submit a call after shutdown")
        if not self._started:
            self._start()
        self._calls.put(call)

    def shutdown(self) -> None:
        """Run every call already submitted, then stop the threads."""
        with self._start_lock:
            self._closed = True
            if not self._started:
                return
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()

    def _start(self) -> None:
        # Only a process that gets work has these threads (a listener that never runs a job).
        with self._start_lock:
            if self._started or self._closed:
                return
            for thread in self._threads:
                thread.start()
            self._started = True

    def _serve(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while (call := self._calls.get()) is not None:
            call()


__all__ = ["Threads"]
