"""Assemble a listener from settings: worker identity, runner, invoker."""

from __future__ import annotations

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs import known_types
from booklogr_tasks.worker.invokers import InProcessInvoker
from booklogr_tasks.worker.listener import Listener
from booklogr_tasks.worker.runner import Runner, worker_identity

# Tasks one listener runs at once, and so the most it claims in one statement. Fewer, and one
# claim serves too few tasks (a second process adds little); more, and every extra slot costs a
# thread and a pooled connection for a gain within the noise. Exports and imports are I/O-bound
# (COPY, fsync) and overlap well at this many. While jobs are quick the listener claims up to
# twice this (invokers.free_slots). bench/throughput.py and bench/small_exports.py measure it.
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
