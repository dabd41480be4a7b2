"""The memory a listener's imports hold together, bounded: each reserves an estimate from its
file's size before it reads, and waits while the reservations of running imports would pass the
budget (IMPORT_MEMORY_BUDGET_BYTES). Waiting, not refusing: the task keeps its lease (the
listener's heartbeat covers every task it holds) and runs once memory is free."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from booklogr_tasks.jobs.base import JobContext

# An import holds, besides the current row (bounded by imports.base's limits), the duplicate
# keys, notes and reading sessions of the rows read so far: together at most a few times the
# file's size (bench/imports.py measures it).
BYTES_PER_FILE_BYTE = 4
# What any import holds whatever its file: buffers, the current row, the COPY.
BASE_BYTES = 8 * 1024 * 1024
# How often a waiting import checks that it still holds its task.
WAIT_STEP_SECONDS = 0.5


class MemoryBudget:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.reserved = 0
        self.running = 0

    @contextmanager
    def reserve(self, ctx: JobContext, file_bytes: int) -> Iterator[int]:
        """Hold an estimate of the import's memory while it runs; yields the estimate."""
        budget = ctx.settings.import_memory_budget_bytes
        need = min(BASE_BYTES + BYTES_PER_FILE_BYTE * file_bytes, budget)
        with self._changed:
            while self.running and self.reserved + need > budget:
                self._changed.wait(WAIT_STEP_SECONDS)
                ctx.check_lost()  # a task taken away stops waiting
            self.reserved += need
            self.running += 1
        try:
            yield need
        finally:
            with self._changed:
                self.reserved -= need
                self.running -= 1
                self._changed.notify_all()


# One per process: every import of this listener shares it.
IMPORTS = MemoryBudget()
