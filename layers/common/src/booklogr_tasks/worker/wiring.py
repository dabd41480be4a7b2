"""Assemble a listener from settings: worker identity, runner, invoker."""

from __future__ import annotations

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs import known_types
from booklogr_tasks.worker.invokers import InProcessInvoker
from booklogr_tasks.worker.listener import Listener
from booklogr_tasks.worker.runner import Runner, worker_identity

# Tasks one listener runs at once, and so the most it claims in one statement. Measured on 2
# cores (no-op backlog of 3,000, medians of 4 interleaved reps, tasks/s for 1 / 2 processes):
# concurrency 4: 1,738 / 2,251; 10: 2,580 / 3,086; 16: 3,244 / 3,231; the hand-written
# SKIP LOCKED LIMIT 10 loop: 1,583 / 2,697. At 4 a claim serves too few tasks (and a second
# process adds little); past 10 the gain is within the noise while every extra slot costs a
# thread and a pooled connection. Exports and imports are I/O-bound (COPY, fsync) and overlap
# well at 10. Re-measured after claims stopped slowing down with the queue (2026-12-02, 2 cores,
# interleaved runs on a busy machine): no-op backlog of 5,000, 2 processes, concurrency 4:
# 2,906-3,900 tasks/s, 10: 3,581-7,549; 2,000 small exports, 2 processes, 4: 353-611, 10:
# 406-662. Again after the exports' per-task system calls were cut (2026-12-03, 2,000 small
# exports, 2 processes, two interleaved rounds of two reps, tasks/s): 4: 500, 655, 478, 523;
# 6: 642, 587, 545, 519; 10: 543, 487, 550, 565; 16: 533, 497, 509, 489. No setting stands out
# of the noise, and 10 keeps the no-op numbers above. While jobs are quick the listener claims up
# to twice this (invokers.free_slots).
# See bench/throughput.py and bench/small_exports.py for the same-run ratios.
DEFAULT_CONCURRENCY = 10


def build_listener(
    settings: Settings,
    types: list[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    nickname: str | None = None,
) -> Listener:
    served = types or known_types()
    unknown = sorted(set(served) - set(known_types()))
    if unknown:
        raise ValueError(f"unknown task types {unknown}; known: {known_types()}")
    worker = worker_identity(nickname or settings.worker_nickname)
    if settings.task_invoker == "lambda":
        from booklogr_tasks.worker.lambda_invoker import LambdaInvoker

        # Each function claims and runs its own task; this process only invokes.
        return Listener(settings, served, worker, LambdaInvoker(settings))
    # The pool serves the jobs, the claims and the heartbeat.
    runner = Runner(settings, worker, pool_size=concurrency + 3, group_commit=True)
    in_process = InProcessInvoker(runner, concurrency)
    listener = Listener(settings, served, worker, in_process)
    in_process.on_done = listener.wake
    return listener
