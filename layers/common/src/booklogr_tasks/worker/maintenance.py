"""Housekeeping that listeners do on a slow timer: expire old tasks and exports, delete the
uploads of failed imports once their retry window is over, and remove the files that tasks
given up on left behind."""

from __future__ import annotations

from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import pooled
from booklogr_tasks.jobs import get_spec, known_types
from booklogr_tasks.storage import export_store

HOUR = 3600.0
DAY = 24 * HOUR


def run_retention(settings: Settings, types: list[str] | None = None) -> tasks.Expired | None:
    """Delete expired rows (tasks only of these types, default all this service runs, and only
    those this service ran), then (after commit) their files. None if another listener is on
    it."""
    with pooled(settings.database_url) as conn:
        expired = tasks.expire(
            conn,
            task_age_seconds=settings.task_retention_days * DAY,
            export_age_seconds=settings.export_max_age_days * DAY,
            keep_exports=settings.export_keep_per_format,
            types=types or known_types(),
            failed_upload_age_seconds=settings.failed_upload_retention_hours * HOUR,
            window_seconds=max(3 * settings.retention_interval_seconds, HOUR),
        )
    if expired is None:
        return None
    store = export_store(settings)
    for key in expired.export_files:
        store.delete(key)
    # The uploads of expired imports, and of failed ones past FAILED_UPLOAD_RETENTION_HOURS
    # (kept until then for a retry); deleting one already gone is a no-op.
    for key in expired.upload_files:
        store.delete(key)
    if expired.tasks or expired.export_files:
        logger.info(
            "retention",
            extra={"tasks_deleted": expired.tasks, "exports_deleted": len(expired.export_files)},
        )
    return expired


def discard_files_of(settings: Settings, task_ids: list[int]) -> None:
    """Export files that lost attempts of these (now failed) tasks left behind."""
    if not task_ids:
        return
    # Called from the listener's loop: never wait there for a file someone still holds.
    store = export_store(settings, wait_for_writers=False)
    with pooled(settings.database_url) as conn:
        for task_id in task_ids:
            task = tasks.get_task(conn, task_id)
            spec = get_spec(task.type)
            if spec is None or spec.export_format is None:
                continue
            # Runs only ever write for the task's creator (the runner refuses other owner_ids).
            store.discard_leftovers(task.created_by, spec.export_format, task_id)
