"""BookLogr's own tables that this service shares: `files` (the exports BookLogr's web app lists)
and `revoked_tokens` (tokens BookLogr's logout revoked). The SQL is in queries.py."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from booklogr_tasks.core.models import ExportRecord
from booklogr_tasks.db import queries
from booklogr_tasks.db.pool import Conn


class FileRecord(BaseModel):
    """One row of BookLogr's `files`: created_at is naive UTC, as BookLogr stores it."""

    id: int
    filename: str
    created_at: datetime | None


def list_files(conn: Conn, owner_id: int) -> list[FileRecord]:
    """The owner's files, newest first (BookLogr's own exports and this service's)."""
    rows = conn.execute(queries.LIST_OWN_FILES, {"owner": owner_id}).fetchall()
    return [FileRecord.model_validate(row) for row in rows]


def get_file(conn: Conn, owner_id: int, filename: str) -> FileRecord | None:
    row = conn.execute(queries.GET_OWN_FILE, {"owner": owner_id, "filename": filename}).fetchone()
    return None if row is None else FileRecord.model_validate(row)


def export_of_file(conn: Conn, owner_id: int, filename: str) -> ExportRecord | None:
    """The export this service stored under that name; None for BookLogr's own files."""
    row = conn.execute(
        queries.GET_OWN_EXPORT_BY_FILENAME, {"owner": owner_id, "filename": filename}
    ).fetchone()
    return None if row is None else ExportRecord.model_validate(row)


def table_exists(conn: Conn, name: str) -> bool:
    row = conn.execute(queries.TABLE_EXISTS, {"name": name}).fetchone()
    return bool(row and row["present"])


def token_revoked(conn: Conn, jti: str) -> bool:
    """Whether BookLogr's logout revoked the token with this jti (needs `revoked_tokens`)."""
    row = conn.execute(queries.TOKEN_REVOKED, {"jti": jti}).fetchone()
    return bool(row and row["revoked"])
