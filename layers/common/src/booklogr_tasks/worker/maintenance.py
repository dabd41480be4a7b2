"""Housekeeping that listeners do on a slow timer: expire old tasks and exports, and remove the
files that tasks given up on left behind."""

from __future__ import annotations

from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import pooled
from booklogr_tasks.jobs import get_spec
from booklogr_tasks.storage import export_store

DAY = 86_400.0


def run_retention(settings: Settings) -> tasks.Expired | None:
    """Delete expired rows, then (after commit) their files. None if another listener is on it."""
    with pooled(settings.database_url) as conn:
        expired = tasks.expire(
            conn,
            task_age_seconds=settings.task_retention_days * DAY,
            export_age_seconds=settings.export_max_age_days * DAY,
            keep_exports=settings.export_keep_per_format,
        )
    if expired is None:
        return None
    store = export_store(settings)
    for key in expired.export_files:
        store.delete(key)
    for key in expired.upload_files:  # the files of expired imports (kept for a retry)
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
    store = export_store(settings)
    with pooled(settings.database_url) as conn:
        for task_id in task_ids:
            task = tasks.get_task(conn, task_id)
            spec = get_spec(task.type)
            if spec is None or spec.export_format is None:
                continue
            # Runs only ever write for the task's creator (the runner refuses other owner_ids).
            store.discard_leftovers(task.created_by, spec.export_format, task_id)
