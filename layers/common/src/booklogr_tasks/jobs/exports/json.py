"""json_export: all of the owner's books as one JSON array, each with its notes, exact values.

PostgreSQL builds each book's JSON text; a named (server-side) cursor hands the rows over in
batches, so memory stays flat however large the library.
"""

from __future__ import annotations

from typing import LiteralString

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.books import NOTES_JSON
from booklogr_tasks.jobs.exports.base import register_export
from booklogr_tasks.storage import PendingExport

BOOKS_JSON = f"""
SELECT json_build_object(
           'id', b.id, 'title', b.title, 'subtitle', b.subtitle, 'isbn', b.isbn,
           'author', b.author, 'description', b.description,
           'reading_status', b.reading_status, 'current_page', b.current_page,
           'total_pages', b.total_pages, 'rating', b.rating, 'created_on', b.created_on,
           'notes', {NOTES_JSON})::text AS book
  FROM books b WHERE b.owner_id = %(owner)s ORDER BY b.id"""
BATCH_ROWS = 1000


def write_json(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    sink.write(b"[")
    rows = write_books(conn, ctx, owner_id, sink, BOOKS_JSON)
    sink.write(b"\n]\n")
    return rows


def write_books(
    conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport, query: LiteralString
) -> int:
    """The elements of a JSON array, one per row of `query` (its column `book`, JSON text),
    read through a server-side cursor in batches; the caller writes the brackets."""
    rows = 0
    with conn.cursor(name="books_json") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(query, {"owner": owner_id})
        for row in cur:
            sink.write((",\n" if rows else "\n").encode() + row["book"].encode())
            rows += 1
            if rows % BATCH_ROWS == 0:
                ctx.check_lost()
                ctx.report_progress(rows)
    return rows


SPEC = register_export(
    "json_export",
    "json",
    write_json,
    "All of the owner's books as a JSON array, each with its notes, exact values.",
    content_type="application/json",
)
