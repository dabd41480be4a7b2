"""A third party's export format, in one module (BOOKLOGR_TASKS_JOB_MODULES=
tests.export_format_for_tests): the owner's titles as a Markdown list."""

from __future__ import annotations

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.exports.base import register_export
from booklogr_tasks.storage import PendingExport


def write_markdown(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    rows = conn.execute(
        "SELECT title FROM books WHERE owner_id = %(owner)s ORDER BY id", {"owner": owner_id}
    ).fetchall()
    sink.write(b"# My books\n\n")
    for row in rows:
        sink.write(f"- {row['title']}\n".encode())
    return len(rows)


SPEC = register_export(
    "markdown_export",
    "markdown",
    write_markdown,
    "All of the owner's titles as a Markdown list.",
    content_type="text/markdown",
    extension="md",
)
