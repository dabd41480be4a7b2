"""The scheduler: due export schedules become export tasks (db/schedules.py says how each period
yields exactly one). It runs in every listener (a thread ticking every SCHEDULE_TICK_SECONDS) and,
deployed, as a Lambda function on an EventBridge schedule: the same `run_schedules`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import schedules
from booklogr_tasks.db.pool import pooled


def run_schedules(settings: Settings) -> schedules.Run:
    """One export task for every due schedule, in batches until none is left that can run now
    (schedules of users at the cap stay due and wait for room)."""
    total = schedules.Run(created=[], waiting=0)
    while True:
        with pooled(settings.database_url) as conn:
            run = schedules.run_due(conn, settings.max_pending_tasks_per_user)
        total.created.extend(run.created)
        total.waiting = run.waiting
        if len(run.created) + run.waiting < schedules.DUE_BATCH or not run.created:
            break
    if total.created:
        logger.info(
            "scheduled exports created",
            extra={"task_ids": [t.id for t in total.created][:50], "waiting": total.waiting},
        )
    return total


def start_scheduler(settings: Settings, stopping: threading.Event) -> Callable[[], None]:
    """Run the scheduler every SCHEDULE_TICK_SECONDS in a thread of its own (a listener's, for
    its life) until `stopping` is set or the returned function is called (which waits for it)."""
    done = threading.Event()

    def loop() -> None:
        while not (done.is_set() or stopping.is_set()):
            try:
                run_schedules(settings)
            except Exception:
                # The database may be away; the next tick tries again.
                logger.exception("scheduler round failed")
            done.wait(settings.schedule_tick_seconds)

    thread = threading.Thread(target=loop, name="scheduler", daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(timeout=30)

    return stop
