"""Loading an import: the file is read, checked and COPYed in one pass, in one transaction.

Everything happens in the job's `publish` step, inside the transaction that marks the task a
success: the books, their notes and reading sessions and the task's outcome commit together or
not at all. The file streams from the store through the CSV reader straight into `COPY books`,
so the database stores row n while row n+1 is parsed, and only the current row, the duplicate
keys and the (few) notes and sessions waiting for their own COPY are held in memory.

Book ids come from the books' sequence, taken in blocks on a second connection (a connection in
COPY cannot run queries): notes and sessions need them, and sequence values are not
transactional, so an import that fails only leaves a gap in the ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, BinaryIO

import psycopg
from psycopg.rows import tuple_row

from booklogr_tasks.core.errors import FileUnusable, JobError, UploadMissing
from booklogr_tasks.core.models import ImportPayload
from booklogr_tasks.core.observability import logger
from booklogr_tasks.db.files import check_owner_is_user, table_exists
from booklogr_tasks.db.pool import Conn, connect
from booklogr_tasks.jobs.base import JobContext, JobSpec, Outcome
from booklogr_tasks.jobs.imports.base import (
    BookIn,
    ImportFormat,
    Reading,
    Skipped,
    as_stream,
    books_of,
    no_cyclic_gc,
    size_of,
)
from booklogr_tasks.jobs.imports.budget import IMPORTS
from booklogr_tasks.jobs.imports.duplicates import Seen
from booklogr_tasks.storage import export_store

ID_BLOCK = 5000

# BookLogr's books.owner_id references profiles.owner_id: such databases need the profile first.
PROFILE_REQUIRED = """
SELECT EXISTS (
    SELECT 1 FROM pg_constraint
     WHERE contype = 'f' AND conrelid = to_regclass('books')
       AND confrelid = to_regclass('profiles')) AS required"""
# display_name is unique: take 'user<id>' when free, else leave it empty for BookLogr to ask.
CREATE_PROFILE = """
INSERT INTO profiles (owner_id, display_name, visibility)
SELECT %(owner)s,
       CASE WHEN EXISTS (SELECT 1 FROM profiles WHERE display_name = %(name)s)
            THEN NULL ELSE %(name)s END,
       'hidden'
ON CONFLICT DO NOTHING
RETURNING owner_id"""
# BookLogr makes this row with the profile, and its settings screens answer 404 without it.
CREATE_USER_SETTINGS = """
INSERT INTO user_settings (owner_id, send_book_events)
SELECT %(owner)s, false
 WHERE NOT EXISTS (SELECT 1 FROM user_settings WHERE owner_id = %(owner)s)"""

# Imports of one owner take turns, so two files cannot both add the same new book.
LOCK_OWNER = "SELECT pg_advisory_xact_lock(hashtext('booklogr_tasks.import'), %(owner)s)"
# What the duplicate keys are made of, for every book the owner has: one query.
LIBRARY_KEYS = "SELECT isbn, title, author FROM books WHERE owner_id = %(owner)s"
BOOK_IDS = """
SELECT nextval(pg_get_serial_sequence('books', 'id'))
  FROM generate_series(1, %(n)s) ORDER BY 1"""
NOW_UTC = "SELECT (now() AT TIME ZONE 'UTC') AS now"
COPY_BOOKS = """COPY books (id, title, isbn, author, description, reading_status, current_page,
                  total_pages, rating, owner_id, created_on) FROM STDIN"""
COPY_NOTES = "COPY notes (book_id, content, quote_page, visibility, created_on) FROM STDIN"
COPY_SESSIONS = "COPY reading_sessions (book_id, status, start_date, end_date) FROM STDIN"

Note = tuple[int, str, int | None, str | None, datetime]
Session = tuple[int, str | None, datetime, datetime]


def run_import(ctx: JobContext, payload: ImportPayload, fmt: ImportFormat) -> Outcome:
    result: dict[str, Any] = {}

    def publish(conn: Conn) -> None:
        result.update(load_file(ctx, conn, payload, fmt))

    def committed() -> None:
        if payload.file is not None:
            delete_upload(ctx, payload.file)

    # A failed import keeps its upload for a retry unless the file itself is unusable
    # (load_file); maintenance deletes it FAILED_UPLOAD_RETENTION_HOURS after the failure.
    return Outcome(result=result, publish=publish, committed=committed)


def load_file(
    ctx: JobContext, conn: Conn, payload: ImportPayload, fmt: ImportFormat
) -> dict[str, Any]:
    """Before its first statement (no transaction is open while it waits), the import takes
    its share of the listener's memory budget. A file that cannot be imported as it is has its
    upload deleted with the failure (a retry would fail the same way); after any other failure
    the upload is kept for a retry, for FAILED_UPLOAD_RETENTION_HOURS (maintenance)."""
    try:
        with open_file(ctx, payload) as source:
            size = size_of(source)
            with IMPORTS.reserve(ctx, ctx.settings.max_upload_bytes if size is None else size):
                return _load(ctx, conn, payload, fmt, source)
    except FileUnusable:
        if payload.file is not None:
            delete_upload(ctx, payload.file)
        raise


def _load(
    ctx: JobContext, conn: Conn, payload: ImportPayload, fmt: ImportFormat, source: BinaryIO
) -> dict[str, Any]:
    owner = payload.owner_id
    conn.execute(LOCK_OWNER, {"owner": owner})
    check_owner_is_user(conn, owner)
    ensure_profile(conn, owner)
    # Read under the lock: no other import of this owner can add a book until this one commits.
    seen = None if payload.allow_duplicates else library(conn, owner)
    with_sessions = table_exists(conn, "reading_sessions")
    now_row = conn.execute(NOW_UTC).fetchone()
    assert now_row is not None
    now: datetime = now_row["now"]

    def progress(done: int, total: int | None) -> None:
        ctx.check_lost()
        ctx.report_progress(done, total)

    reading = Reading(fmt)
    duplicates = Skipped()
    notes: list[Note] = []
    sessions: list[Session] = []
    imported = 0
    with (
        no_cyclic_gc(),
        BookIds(ctx.settings.database_url) as ids,
        conn.cursor() as cur,
    ):
        with cur.copy(COPY_BOOKS) as copy:
            for b in books_of(source, reading, progress):
                if seen is not None:
                    reason = seen.check(b.isbn, b.title, b.author, b.row)
                    if reason is not None:
                        duplicates.add(b.row, reason)
                        continue
                book_id = ids.next()
                copy.write_row(
                    (book_id, b.title, b.isbn, b.author, b.description, b.reading_status,
                     b.current_page, b.total_pages, b.rating, owner, b.created_on or now)
                )  # fmt: skip
                imported += 1
                for n in b.notes:
                    notes.append(
                        (book_id, n.content, n.quote_page, n.visibility, n.created_on or now)
                    )
                if with_sessions and b.read_on is not None:
                    sessions.append(_session(book_id, b))
        ctx.report_progress(reading.rows, reading.rows)
        with cur.copy(COPY_NOTES) as copy:
            for note in notes:
                copy.write_row(note)
        if sessions:
            with cur.copy(COPY_SESSIONS) as copy:
                for session in sessions:
                    copy.write_row(session)
    return {
        "rows": reading.rows,
        "imported": imported,
        "book_notes": len(notes),
        "reading_sessions": len(sessions),
        "skipped_duplicates": duplicates.count,
        "duplicate_rows": duplicates.examples,
        "duplicate_reasons": duplicates.kinds,
        **reading.invalid_summary(),
        "notes": reading.remarks.messages(),
    }


def _session(book_id: int, book: BookIn) -> Session:
    """A finished reading, as BookLogr records one: started when the file says, else on the
    day it ended."""
    assert book.read_on is not None
    return (book_id, book.reading_status, book.read_from or book.read_on, book.read_on)


def library(conn: Conn, owner_id: int) -> Seen:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(LIBRARY_KEYS, {"owner": owner_id})
        return Seen.of_library(cur)


def ensure_profile(conn: Conn, owner_id: int) -> None:
    """The owner's BookLogr profile (and settings) when this database's books need one."""
    row = conn.execute(PROFILE_REQUIRED).fetchone()
    if row is None or not row["required"]:
        return
    created = conn.execute(CREATE_PROFILE, {"owner": owner_id, "name": f"user{owner_id}"})
    if created.fetchone() is not None and table_exists(conn, "user_settings"):
        conn.execute(CREATE_USER_SETTINGS, {"owner": owner_id})


class BookIds:
    """Ids for new books, taken from the sequence in blocks on a connection of their own."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._block: Iterator[int] = iter(())

    def __enter__(self) -> BookIds:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def next(self) -> int:
        for book_id in self._block:
            return book_id
        if self._conn is None:
            self._conn = connect(self.database_url, autocommit=True)
        with self._conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(BOOK_IDS, {"n": ID_BLOCK}).fetchall()
        self._block = iter([int(r[0]) for r in rows])
        return next(self._block)


@contextmanager
def open_file(ctx: JobContext, payload: ImportPayload) -> Iterator[BinaryIO]:
    """The file to import: the payload's text, or the upload it names, read from the store."""
    if payload.file is None:
        assert payload.csv is not None  # the payload holds exactly one of the two
        yield as_stream(payload.csv)
        return
    try:
        source = export_store(ctx.settings).open_upload(payload.file)
    except UploadMissing:
        raise JobError("the uploaded file is no longer stored; upload it again") from None
    with source:
        yield source


def delete_upload(ctx: JobContext, key: str) -> None:
    """The upload an import has read, once its books are committed. A file that cannot be
    deleted now is deleted by retention, with its task."""
    try:
        export_store(ctx.settings).delete(key)
    except Exception as exc:
        logger.warning("upload not deleted", extra={"key": key, "error": str(exc)})


def register_import(task_type: str, fmt: ImportFormat, summary: str) -> JobSpec[Any]:
    """Register an import type: the shared payload, run_import() with this file format."""
    from booklogr_tasks.jobs import register

    def run(ctx: JobContext, payload: ImportPayload) -> Outcome:
        return run_import(ctx, payload, fmt)

    return register(
        JobSpec(task_type=task_type, payload_model=ImportPayload, run=run, summary=summary)
    )
