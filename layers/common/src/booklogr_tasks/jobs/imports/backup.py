"""backup_import: restore a BookLogr backup (jobs/backup_document.py) into the caller's account.

All of it happens in the job's `publish` step, inside the transaction that marks the task a
success, so a restore is all or nothing. Ids are the target database's own: every book, note,
session, field and value gets a new id, and the rows that point at one another follow. Nothing
is doubled: a book the account already has (the imports' duplicate rule) is skipped with its
notes, sessions and values; a field is matched by name; the profile and settings are filled in
only where the account has none, and the display name only where nobody else uses it.

The document is read whole (bounded by MAX_UPLOAD_BYTES): JSON does not say where a book ends
before it is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, BinaryIO

import psycopg
from pydantic import Field, StrictBool, model_validator

from booklogr_tasks.core.errors import JobError
from booklogr_tasks.core.models import ImportPayload
from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.backup_document import FORMAT, SECRET_COLUMNS, VERSION
from booklogr_tasks.jobs.base import JobContext, JobSpec, Outcome
from booklogr_tasks.jobs.imports.loading import (
    LOCK_OWNER,
    BookIds,
    delete_upload,
    ensure_profile,
    library,
    open_file,
)

PROGRESS_EVERY_BOOKS = 1000
_OTHER_TYPES = "upload other exports with their own type (csv, goodreads, storygraph, calibre)"

COLUMNS = """
SELECT column_name FROM information_schema.columns
 WHERE table_schema = current_schema() AND table_name = %(table)s ORDER BY ordinal_position"""
HAS_PROFILE = "SELECT EXISTS (SELECT 1 FROM profiles WHERE owner_id = %(owner)s) AS present"
NAME_TAKEN = "SELECT EXISTS (SELECT 1 FROM profiles WHERE display_name = %(name)s) AS taken"
HAS_SETTINGS = "SELECT EXISTS (SELECT 1 FROM user_settings WHERE owner_id = %(owner)s) AS present"
OWN_FIELDS = "SELECT id, name FROM fields WHERE owner_id = %(owner)s ORDER BY id"
NOW_UTC = "SELECT (now() AT TIME ZONE 'UTC') AS now"


class BackupImportPayload(ImportPayload):
    """The backup to restore: its text (`csv`, the whole file's text) or a stored upload."""

    allow_duplicates: StrictBool = Field(
        False,
        json_schema_extra={"const": False},
        description="Always false: a restore never adds a book the account already has.",
    )

    @model_validator(mode="after")
    def _never_doubles(self) -> BackupImportPayload:
        if self.allow_duplicates:
            raise ValueError("a restore never adds a book twice: leave allow_duplicates false")
        return self


def run_restore(ctx: JobContext, payload: BackupImportPayload) -> Outcome:
    result: dict[str, Any] = {}

    def publish(conn: Conn) -> None:
        with open_file(ctx, payload) as source:
            document = read_document(source)
        result.update(restore(ctx, conn, payload.owner_id, document))

    def committed() -> None:
        if payload.file is not None:
            delete_upload(ctx, payload.file)

    return Outcome(result=result, publish=publish, committed=committed)


# --- reading the document -------------------------------------------------------------------


def read_document(source: BinaryIO) -> dict[str, Any]:
    """The backup as an object, or JobError saying why the file is not one this can restore."""
    data = source.read()
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"[")):
        raise JobError(f"the file is not a BookLogr backup: it is not JSON; {_OTHER_TYPES}")
    try:
        document = json.loads(data, parse_float=Decimal)
    except UnicodeDecodeError:
        raise JobError("the file is not a BookLogr backup: it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise JobError(
            f"the file is not a BookLogr backup: it is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise JobError("the file is not a BookLogr backup: its JSON is nested too deeply") from None
    if not isinstance(document, dict) or "format" not in document:
        raise JobError(
            f'the file is not a BookLogr backup: it has no "format": "{FORMAT}"; {_OTHER_TYPES}'
        )
    if document["format"] != FORMAT:
        shown = str(document["format"])[:40]
        raise JobError(f'the file is a "{shown}" file, not a BookLogr backup ("{FORMAT}")')
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise JobError("the BookLogr backup is broken: its version is not a whole number")
    if version > VERSION:
        raise JobError(
            f"this BookLogr backup is version {version}, newer than the version {VERSION} this "
            "service reads; update booklogr-tasks to restore it"
        )
    _check_shape(document)
    return document


def _check_shape(document: dict[str, Any]) -> None:
    for name in ("profile", "settings"):
        if document.get(name) is not None and not isinstance(document[name], dict):
            raise _broken(f"{name} is not an object")
    _objects(document.get("fields", []), "fields")
    for i, field in enumerate(document.get("fields", [])):
        if not isinstance(field.get("name"), str):
            raise _broken(f"fields[{i}] has no name")
    for i, book in enumerate(_objects(document.get("books", []), "books")):
        _objects(book.get("notes", []), f"books[{i}].notes")
        _objects(book.get("reading_sessions", []), f"books[{i}].reading_sessions")
        values = book.get("field_values", {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise _broken(f"books[{i}].field_values is not an object of texts")


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _broken(f"{where} is not a list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _broken(f"{where}[{i}] is not an object")
    return value


def _broken(what: str) -> JobError:
    return JobError(f"the BookLogr backup is broken: {what}")


# --- restoring ------------------------------------------------------------------------------


def restore(ctx: JobContext, conn: Conn, owner: int, document: dict[str, Any]) -> dict[str, Any]:
    conn.execute(LOCK_OWNER, {"owner": owner})  # imports and restores of one owner take turns
    books = document.get("books", [])
    try:
        profile = _restore_profile(conn, owner, document.get("profile"))
        settings = _restore_settings(conn, owner, document.get("settings"))
        fields, fields_added = _restore_fields(conn, owner, document.get("fields", []))
        counts = _restore_books(ctx, conn, owner, books, fields)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        # The transaction rolls back: nothing of the backup stays.
        where = (exc.diag.context or "").split("\n", 1)[0]
        raise _broken(
            f"a value does not fit its column ({exc.diag.message_primary}"
            f"{'; ' + where if where else ''})"
        ) from None
    return {
        "rows": len(books),
        **counts,
        "fields_added": fields_added,
        "profile": profile,
        "settings": settings,
    }


def _restore_profile(conn: Conn, owner: int, profile: dict[str, Any] | None) -> str:
    if _present(conn, HAS_PROFILE, owner):
        return "kept"
    if profile is None:
        ensure_profile(conn, owner)  # where BookLogr's books need one
        return "none in the backup"
    row = dict(profile)
    name = row.get("display_name")
    taken = name is not None and _one(conn, NAME_TAKEN, {"name": name})["taken"]
    if taken:
        row["display_name"] = None  # BookLogr asks for a new one
    _insert(conn, "profiles", row, {"owner_id": owner})
    return "restored without its display name (taken)" if taken else "restored"


def _restore_settings(conn: Conn, owner: int, settings: dict[str, Any] | None) -> str:
    if _present(conn, HAS_SETTINGS, owner):
        return "kept"
    if settings is None:
        return "none in the backup"
    _insert(conn, "user_settings", settings, {"owner_id": owner})
    return "restored"


def _restore_fields(
    conn: Conn, owner: int, fields: list[dict[str, Any]]
) -> tuple[dict[str, int], int]:
    """Field name → id in the account, after adding the backup's fields it lacks."""
    ids: dict[str, int] = {}
    for row in conn.execute(OWN_FIELDS, {"owner": owner}):
        ids.setdefault(row["name"], row["id"])
    added = 0
    for field in fields:
        if field["name"] not in ids:
            ids[field["name"]] = _insert(conn, "fields", field, {"owner_id": owner})
            added += 1
    return ids, added


def _restore_books(
    ctx: JobContext, conn: Conn, owner: int, books: list[dict[str, Any]], fields: dict[str, int]
) -> dict[str, Any]:
    seen = library(conn, owner)
    now = _one(conn, NOW_UTC, {})["now"]
    book_columns = _columns(conn, "books", "id", "owner_id")
    note_columns = _columns(conn, "notes", "id", "book_id")
    session_columns = _columns(conn, "reading_sessions", "id", "book_id")
    notes: list[tuple[Any, ...]] = []
    sessions: list[tuple[Any, ...]] = []
    values: list[tuple[int, int, str]] = []
    duplicates: list[dict[str, Any]] = []
    imported = 0
    with BookIds(ctx.settings.database_url) as ids, conn.cursor() as cur:
        with cur.copy(_copy("books", ["id", "owner_id", *book_columns])) as copy:
            for number, book in enumerate(books, start=1):
                if number % PROGRESS_EVERY_BOOKS == 0:
                    ctx.check_lost()
                    ctx.report_progress(number, len(books))
                reason = seen.check(book.get("isbn"), book.get("title"), book.get("author"), number)
                if reason is not None:
                    duplicates.append({"book": number, "reason": reason})
                    continue
                book_id = ids.next()
                if "created_on" not in book:
                    book = {**book, "created_on": now}
                copy.write_row([book_id, owner, *_values(book, book_columns)])
                imported += 1
                notes.extend((book_id, *_values(n, note_columns)) for n in book.get("notes", []))
                sessions.extend(
                    (book_id, *_values(s, session_columns))
                    for s in book.get("reading_sessions", [])
                )
                values.extend(
                    (book_id, fields[name], value)
                    for name, value in book.get("field_values", {}).items()
                    if name in fields
                )
        _copy_rows(cur, "notes", ["book_id", *note_columns], notes)
        _copy_rows(cur, "reading_sessions", ["book_id", *session_columns], sessions)
        _copy_rows(cur, "field_values", ["book_id", "field_id", "value"], values)
    ctx.report_progress(len(books), len(books))
    return {
        "imported": imported,
        "book_notes": len(notes),
        "reading_sessions": len(sessions),
        "field_values": len(values),
        "skipped_duplicates": len(duplicates),
        "duplicate_rows": duplicates[:100],
    }


def _copy_rows(cur: Any, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
    with cur.copy(_copy(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)


def _copy(table: str, columns: list[str]) -> str:
    # Table and column names come from this module and from the database's own catalogue.
    names = ", ".join(f'"{c}"' for c in columns)
    return f'COPY "{table}" ({names}) FROM STDIN'


def _insert(conn: Conn, table: str, row: dict[str, Any], fixed: dict[str, Any]) -> int:
    """One row of the backup into `table` (the columns both have), with `fixed` overriding;
    returns its new id."""
    columns = [c for c in _columns(conn, table, "id", *fixed) if c in row]
    names = [*fixed, *columns]
    params = [*fixed.values(), *_values(row, columns)]
    quoted = ", ".join(f'"{c}"' for c in names)
    marks = ", ".join(["%s"] * len(names))
    statement = f'INSERT INTO "{table}" ({quoted}) VALUES ({marks}) RETURNING id'
    return int(conn.execute(statement.encode(), params).fetchone()["id"])  # type: ignore[index]


def _columns(conn: Conn, table: str, *leave_out: str) -> list[str]:
    """The table's columns that a backup may fill: never its ids, owner or secrets."""
    skipped = {*leave_out, *SECRET_COLUMNS}
    rows = conn.execute(COLUMNS, {"table": table}).fetchall()
    return [r["column_name"] for r in rows if r["column_name"] not in skipped]


def _values(row: dict[str, Any], columns: list[str]) -> Iterator[Any]:
    for column in columns:
        value = row.get(column)
        yield json.dumps(value) if isinstance(value, dict | list) else value


def _present(conn: Conn, query: str, owner: int) -> bool:
    return bool(_one(conn, query, {"owner": owner})["present"])


def _one(conn: Conn, query: str, params: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return dict(row)


def register_restore() -> JobSpec[Any]:
    from booklogr_tasks.jobs import register

    return register(
        JobSpec(
            task_type="backup_import",
            payload_model=BackupImportPayload,
            run=run_restore,
            summary=(
                "Restore a BookLogr backup (backup_export) into your account, all or nothing: "
                "books you already have, fields of the same name and an existing profile or "
                "settings are kept, never doubled."
            ),
        )
    )


SPEC = register_restore()
