"""A running attempt's lease as its job sees it: the cancel signal and the progress it reports.

The worker's heartbeat (worker/leases.py) sets `lost` when the task was taken away or the process
is shutting down; the job checks it between chunks and stops, leaving nothing behind. `ended` is
set once the attempt has stopped touching shared state, so another attempt at the same task in
the same process waits for it before it starts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from booklogr_tasks.core.errors import TaskLost


class Flag:
    """Set once by one thread, read by others; nobody waits for it. A threading.Event (a
    Condition and a lock each, made for every task) was a visible part of a listener's claim
    loop in a profile."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Signal(Flag):
    """A Flag that can also be waited for. The Event behind a wait is only made when somebody
    waits, which is rare (a newer attempt at the same task in the same process)."""

    __slots__ = ("_event",)
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._event: threading.Event | None = None

    def set(self) -> None:
        with self._lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


@dataclass(eq=False)
class Lease:
    task_id: int
    # The claim this lease belongs to: the task's `attempts` right after that claim.
    attempt: int = 0
    lost: Flag = field(default_factory=Flag)
    # Set with `lost` when this process asks the job to stop so it can exit: the runner then
    # gives the task back instead of leaving it to the reaper.
    shutting_down: bool = False
    # The attempt is recording its outcome: the finish statement's guard, not the heartbeat,
    # decides whether it still owns the task (no "lease lost" for a task that just finished).
    finishing: bool = False
    ended: Signal = field(default_factory=Signal)
    progress: dict[str, Any] | None = None

    def report_progress(self, done: int, total: int | None = None) -> None:
        """Cheap: kept in memory and written with the next heartbeat. A missing total keeps
        the one reported before."""
        if total is None and self.progress is not None:
            total = self.progress.get("total")
        self.progress = {"done": done, "total": total}

    def stop_for_shutdown(self) -> None:
        self.shutting_down = True
        self.lost.set()

    def check(self) -> None:
        if self.lost.is_set():
            raise TaskLost(f"task {self.task_id} was taken away from this worker")
