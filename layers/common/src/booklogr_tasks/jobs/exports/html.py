"""html_export: the owner's library as a reading report, one self-contained, printable page.

At the top, a summary drawn from SQL aggregates (report.py) as inline SVG bar charts with their
numbers also in tables; below, every book, grouped by reading status. Jinja2 renders the page
with autoescape on, so every user string is escaped, and renders it as a stream over a named
(server-side) cursor that delivers the books already in group order: memory stays flat however
many books.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, Template
from psycopg.rows import namedtuple_row

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.books import FINISHED_READS, NOTES_JSON
from booklogr_tasks.jobs.exports.base import register_export
from booklogr_tasks.jobs.exports.charts import fmt_int
from booklogr_tasks.jobs.exports.report import (
    GROUP_OF,
    GROUPS,
    READ,
    Group,
    rating_text,
    stars_text,
    summarise,
)
from booklogr_tasks.storage import PendingExport

# Books in report order: by group; read books most recently finished first, then (and in the
# other groups) by title. The inner query sorts the books alone; the outer one asks for the
# order the inner rows already have (so PostgreSQL adds no second sort) and builds each book's
# notes on the rows as they stream out, so the sort never carries them.
BOOKS = f"""
WITH finished AS ({FINISHED_READS})
SELECT b.*, {NOTES_JSON} AS notes
  FROM (SELECT b.id, b.title, b.subtitle, b.author, b.isbn, b.reading_status, b.current_page,
               b.total_pages, b.rating, b.description, b.created_on, f.finished_on,
               {GROUP_OF} AS grp,
               CASE WHEN {GROUP_OF} = {READ} THEN f.finished_on END AS finished_key,
               lower(b.title) AS title_key
          FROM books b LEFT JOIN finished f ON f.book_id = b.id
         WHERE b.owner_id = %(owner)s
         ORDER BY grp, finished_key DESC NULLS LAST, title_key, b.title, b.id) b
 ORDER BY b.grp, b.finished_key DESC NULLS LAST, b.title_key, b.title, b.id"""
BATCH_ROWS = 1000
FLUSH_PIECES = 4096


def day(value: datetime | date | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


@cache
def template() -> Template:
    env = Environment(
        loader=PackageLoader("booklogr_tasks.jobs", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        rating=rating_text,
        stars=stars_text,
        day=day,
        number=fmt_int,
    )
    return env.get_template("export.html")


def write_html(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    summary = summarise(conn, owner_id)
    written = 0

    def books() -> Iterator[Any]:
        nonlocal written
        # Named tuples: the template reads `book.title`, which Jinja tries as an attribute first.
        with conn.cursor(name="html_export", row_factory=namedtuple_row) as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(BOOKS, {"owner": owner_id})
            for row in cur:
                yield row
                written += 1
                if written % BATCH_ROWS == 0:
                    ctx.check_lost()
                    ctx.report_progress(written)

    def groups() -> Iterator[tuple[Group, int, Iterator[Any]]]:
        for index, rows in itertools.groupby(books(), key=lambda row: int(row.grp)):
            group = GROUPS[index]
            yield group, summary.count_of(group), rows

    page = template().generate(
        summary=summary,
        charts=summary.charts(),
        groups=groups(),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        average=None if summary.average is None else Decimal(round(summary.average, 1)),
    )
    # The template yields many small strings; they go to the sink a few thousand at a time
    # (tens of kB), gathered by islice without a Python-level step per string.
    while pieces := list(itertools.islice(page, FLUSH_PIECES)):
        sink.write("".join(pieces).encode())
    return written


SPEC = register_export(
    "html_export",
    "html",
    write_html,
    "All of the owner's books as a reading report: one self-contained, printable HTML page with "
    "a summary (statuses, books and pages read per year, ratings, most-read authors) as charts, "
    "and the books grouped by status.",
    content_type="text/html",
)
