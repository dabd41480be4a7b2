"""What every export shares: reserve an id, stream the file, publish it with its rows.

Publishing records the export's row and lists the file in BookLogr's `files` table, in the
transaction that marks the task a success, so BookLogr's web app lists every finished export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from booklogr_tasks.core.models import ExportPayload
from booklogr_tasks.db import files, tasks
from booklogr_tasks.db.pool import Conn, pooled
from booklogr_tasks.jobs.base import JobContext, JobSpec, Outcome
from booklogr_tasks.storage import PendingExport, export_key, export_store

# Writes the owner's export into `sink`, reading on `conn`; returns the number of books written.
ExportWriter = Callable[[Conn, JobContext, int, PendingExport], int]

COUNT_BOOKS = "SELECT count(*) AS n FROM books WHERE owner_id = %(owner)s"


def run_export(ctx: JobContext, payload: ExportPayload, fmt: str, write: ExportWriter) -> Outcome:
    store = export_store(ctx.settings)
    owner, task_id = payload.owner_id, ctx.task.id
    store.discard_leftovers(owner, fmt, task_id)
    with pooled(ctx.settings.database_url) as conn:
        export_id = tasks.reserve_export_id(conn, fmt)
        conn.commit()
        key = export_key(fmt, task_id, export_id)
        pending = store.begin(key, fmt)
        try:
            total = conn.execute(COUNT_BOOKS, {"owner": owner}).fetchone()
            ctx.report_progress(0, int(total["n"]) if total else None)
            books = write(conn, ctx, owner, pending)
            pending.complete()
        except BaseException:
            pending.discard()
            raise

    def publish(conn: Conn) -> None:
        tasks.record_export(conn, fmt, export_id, key, owner, task_id)
        files.record_file(conn, key, owner)
        pending.publish()

    return Outcome(
        result={
            "export_id": export_id,
            "format": fmt,
            "books": books,
            "download": f"/v1/exports/{fmt}/{export_id}",
        },
        publish=publish,
        discard=pending.discard,
    )


def register_export(task_type: str, fmt: str, write: ExportWriter, summary: str) -> JobSpec[Any]:
    """Register an export type: its payload is the owner alone, its job run_export()."""
    from booklogr_tasks.jobs import register

    def run(ctx: JobContext, payload: ExportPayload) -> Outcome:
        return run_export(ctx, payload, fmt, write)

    return register(
        JobSpec(
            task_type=task_type,
            payload_model=ExportPayload,
            run=run,
            summary=summary,
            export_format=fmt,
        )
    )
