"""A fixed set of threads running the calls put in one queue, in order.

Not concurrent.futures.ThreadPoolExecutor: nobody here needs its Future. Its submit builds one
(a Condition and an RLock) and takes two locks per call, and handing the result to asyncio wraps
that Future in another; both are a visible cost on the hot paths that use this instead (a
listener's claiming thread, the API's hand-over of each request to a handler thread).

A call that raises is logged (with the task id it was submitted with, if any) and its thread
serves the next call: the pool never shrinks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from booklogr_tasks.core.observability import logger

# A call, and the task it runs for (None when it runs none), named in the log if it raises.
_Call = tuple[Callable[[], None], int | None]


class Threads:
    def __init__(
        self, count: int, name: str, initializer: Callable[[], None] | None = None
    ) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._initializer = initializer
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(count)
        ]
        self._started = False
        self._closed = False
        self._start_lock = threading.Lock()

    def submit(self, call: Callable[[], None], task_id: int | None = None) -> None:
        """RuntimeError after shutdown (as ThreadPoolExecutor's): nothing would run the call.
        `task_id` names the task the call runs, for the log should it raise."""
        if self._closed:
            raise RuntimeError("cannot submit a call after shutdown")
        if not self._started:
            self._start()
        self._calls.put((call, task_id))

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
        while (item := self._calls.get()) is not None:
            call, task_id = item
            try:
                call()
            except Exception:
                fields: dict[str, object] = {"threads": self._name}
                if task_id is not None:
                    fields["task_id"] = task_id
                logger.exception("a call raised; its thread serves on", extra=fields)


__all__ = ["Threads"]
