"""csv_export: all of the owner's books as BookLogr's CSV, streamed by PostgreSQL's COPY."""

from __future__ import annotations

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.books import csv_select
from booklogr_tasks.jobs.exports.base import register_export, stream_copy
from booklogr_tasks.storage import PendingExport

# The server formats every row (RFC 4180 quoting, UTF-8); Python only moves the bytes along.
COPY_CSV = f"COPY ({csv_select()}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"


def write_csv(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    return stream_copy(conn, ctx, owner_id, sink, COPY_CSV)


SPEC = register_export(
    "csv_export",
    "csv",
    write_csv,
    "All of the owner's books as BookLogr's CSV (notes as a JSON array).",
    content_type="text/csv",
    snapshot=False,  # one COPY: its own snapshot
)
