"""Imports past the listener's memory budget wait their turn; they are not refused."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from booklogr_tasks.core.errors import TaskLost
from booklogr_tasks.jobs.imports.budget import BASE_BYTES, BYTES_PER_FILE_BYTE, MemoryBudget

MB = 1024 * 1024


def _ctx(budget: int, lost: threading.Event | None = None) -> Any:
    def check_lost() -> None:
        if lost is not None and lost.is_set():
            raise TaskLost("taken away")

    return SimpleNamespace(
        settings=SimpleNamespace(import_memory_budget_bytes=budget), check_lost=check_lost
    )


def test_an_import_past_the_budget_waits_until_memory_is_free() -> None:
    budget = MemoryBudget()
    need = BASE_BYTES + BYTES_PER_FILE_BYTE * 10 * MB
    ctx = _ctx(budget=need + need // 2)  # room for one such import, not two
    second_in = threading.Event()

    def second() -> None:
        with budget.reserve(ctx, 10 * MB):
            second_in.set()

    with budget.reserve(ctx, 10 * MB) as held:
        assert held == need
        waiting = threading.Thread(target=second)
        waiting.start()
        assert not second_in.wait(1.0)  # waits while the first runs
        assert budget.running == 1
    waiting.join(10)
    assert second_in.is_set()  # then runs
    assert budget.reserved == 0 and budget.running == 0


def test_one_import_always_runs_however_large_its_file() -> None:
    budget = MemoryBudget()
    with budget.reserve(_ctx(budget=MB), 100 * MB) as held:
        assert held == MB  # capped at the budget: alone, it runs


def test_a_waiting_import_whose_task_is_taken_away_stops_waiting() -> None:
    budget = MemoryBudget()
    lost = threading.Event()
    ctx = _ctx(budget=BASE_BYTES + 1, lost=lost)
    with budget.reserve(ctx, 0):
        lost.set()
        with pytest.raises(TaskLost), budget.reserve(ctx, 0):
            pass
    assert budget.reserved == 0 and budget.running == 0
