"""html_export: all of the owner's books as one self-contained, printable HTML page.

Jinja2 renders the page with autoescape on, so every user string is escaped. The template is
rendered as a stream over a named (server-side) cursor: memory stays flat however many books.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, Template

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.books import NOTES_JSON
from booklogr_tasks.jobs.exports.base import COUNT_BOOKS, register_export
from booklogr_tasks.storage import PendingExport

BOOKS = f"""
SELECT b.title, b.subtitle, b.author, b.isbn, b.reading_status, b.current_page, b.total_pages,
       b.rating, b.description, {NOTES_JSON} AS notes
  FROM books b WHERE b.owner_id = %(owner)s ORDER BY b.id"""
BATCH_ROWS = 1000
FLUSH_BYTES = 64 * 1024


@cache
def template() -> Template:
    env = Environment(
        loader=PackageLoader("booklogr_tasks.jobs", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("export.html")


def write_html(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    counted = conn.execute(COUNT_BOOKS, {"owner": owner_id}).fetchone()
    written = 0

    def books() -> Iterator[dict[str, Any]]:
        nonlocal written
        with conn.cursor(name="html_export") as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(BOOKS, {"owner": owner_id})
            for row in cur:
                yield row
                written += 1
                if written % BATCH_ROWS == 0:
                    ctx.check_lost()
                    ctx.report_progress(written)

    page = template().generate(
        books=books(),
        count=int(counted["n"]) if counted else 0,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    buffer: list[str] = []
    size = 0
    for piece in page:
        buffer.append(piece)
        size += len(piece)
        if size >= FLUSH_BYTES:
            sink.write("".join(buffer).encode())
            buffer, size = [], 0
    sink.write("".join(buffer).encode())
    return written


SPEC = register_export(
    "html_export",
    "html",
    write_html,
    "All of the owner's books as one self-contained HTML page, printable.",
)
