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


@dataclass(eq=False)
class Lease:
    task_id: int
    # The claim this lease belongs to: the task's `attempts` right after that claim.
    attempt: int = 0
    lost: threading.Event = field(default_factory=threading.Event)
    # Set with `lost` when this process asks the job to stop so it can exit: the runner then
    # gives the task back instead of leaving it to the reaper.
    shutting_down: bool = False
    # The attempt is recording its outcome: the finish statement's guard, not the heartbeat,
    # decides whether it still owns the task (no "lease lost" for a task that just finished).
    finishing: bool = False
    ended: threading.Event = field(default_factory=threading.Event)
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
