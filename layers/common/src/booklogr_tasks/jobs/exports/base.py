"""What every export shares: reserve an id, stream the file, publish it with its rows.

Publishing records the export's row (in the one `exports` table, by format) and lists the file
in BookLogr's `files` table, in the transaction that marks the task a success, so BookLogr's web
app lists every finished export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from booklogr_tasks.core.formats import ExportFormat, register_format
from booklogr_tasks.core.models import ExportPayload
from booklogr_tasks.core.observability import logger
from booklogr_tasks.db import schedules, tasks
from booklogr_tasks.db.pool import Conn, pooled
from booklogr_tasks.jobs.base import JobContext, JobSpec, Outcome
from booklogr_tasks.storage import PendingExport, export_key, export_store

# Writes the owner's export into `sink`, reading on `conn`; returns the number of books written.
ExportWriter = Callable[[Conn, JobContext, int, PendingExport], int]

CHECK_EVERY_ROWS = 1000


def run_export(
    ctx: JobContext, payload: ExportPayload, fmt: str, write: ExportWriter, snapshot: bool
) -> Outcome:
    """`snapshot`: the writer reads with more than one statement (see tasks.export_reads)."""
    store = export_store(ctx.settings)
    owner, task_id = payload.owner_id, ctx.task.id
    if ctx.task.attempts > 1:
        # Files an earlier, lost attempt left. A first attempt has none: a task that failed for
        # good had its files removed then (by its runner, or by the reaper that failed it), so
        # even a retried task starts clean, and a first attempt does not scan the folder.
        store.discard_leftovers(owner, fmt, task_id)
    with pooled(ctx.settings.database_url) as conn, tasks.export_reads(conn, snapshot):
        export_id, total = tasks.start_export(conn, fmt, owner)
        key = export_key(fmt, task_id, export_id)
        pending = store.begin(key, fmt)
        try:
            ctx.report_progress(0, total)
            books = write(conn, ctx, owner, pending)
            pending.complete()
            # The file goes under its final name here, in the job's own thread, so the success
            # transaction only writes rows and can be group-committed with other tasks'. A file
            # without a row is a leftover (deleted by the next attempt or discard), never a row
            # without its file.
            pending.publish()
        except BaseException:
            pending.discard()
            raise

    pruned: list[str] = []

    def publish(conn: Conn) -> None:
        tasks.record_export(conn, fmt, export_id, key, owner, task_id)
        # A scheduled export's success deletes its schedule's exports past `keep`.
        pruned.extend(schedules.keep_newest(conn, task_id, fmt, export_id, key, owner))

    def committed() -> None:
        for old in pruned:
            try:
                store.delete(old)
            except Exception as exc:  # its row is gone: retention's sweep cannot find it
                logger.warning("export file not deleted", extra={"key": old, "error": str(exc)})

    return Outcome(
        result={
            "export_id": export_id,
            "format": fmt,
            "books": books,
            "download": f"/v1/exports/{fmt}/{export_id}",
        },
        publish=publish,
        discard=pending.discard,
        light_publish=True,
        committed=committed,
    )


def stream_copy(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport, copy: str) -> int:
    """Move the bytes of `COPY (…) TO STDOUT WITH (FORMAT csv, HEADER true)` into `sink`: the
    server formats every row (RFC 4180 quoting, UTF-8). Returns the number of data rows.

    COPY ends its rows with LF; RFC 4180, Python's csv module and so BookLogr's own export end
    them with CRLF, and so does this. Line breaks inside quoted cells stay as they are (as the
    csv module leaves them)."""
    rows = -1  # the header is the first chunk
    with conn.cursor() as cur, cur.copy(copy, {"owner": owner_id}) as stream:
        for chunk in stream:  # one chunk per row (one CopyData message), ending with its LF
            sink.write(crlf_ended(chunk))
            rows += 1
            if rows % CHECK_EVERY_ROWS == 0:
                ctx.check_lost()
                ctx.report_progress(rows)
    return max(rows, 0)


def crlf_ended(row: bytes | bytearray | memoryview) -> bytes:
    """One COPY row with its LF terminator made CRLF."""
    data = bytes(row)
    return data[:-1] + b"\r\n" if data.endswith(b"\n") else data


def register_export(
    task_type: str,
    fmt: str,
    write: ExportWriter,
    summary: str,
    *,
    content_type: str,
    extension: str | None = None,
    snapshot: bool = True,
) -> JobSpec[Any]:
    """Register an export type and its format: its payload is the owner alone, its job
    run_export(), its files `content_type` named `*.<extension>` (default: the format's name).
    This is all a new format needs; its rows go to the one `exports` table. A writer that reads
    everything with one statement (a COPY) passes snapshot=False."""
    from booklogr_tasks.jobs import register

    register_format(ExportFormat(fmt, content_type, extension or fmt))

    def run(ctx: JobContext, payload: ExportPayload) -> Outcome:
        return run_export(ctx, payload, fmt, write, snapshot)

    return register(
        JobSpec(
            task_type=task_type,
            payload_model=ExportPayload,
            run=run,
            summary=summary,
            export_format=fmt,
        )
    )
