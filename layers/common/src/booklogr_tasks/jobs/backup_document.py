"""The BookLogr backup document: what `backup_export` writes and `backup_import` reads.

One JSON object, `{"format": "booklogr-backup", "version": 1, ...}`, holding everything a user
has in BookLogr's tables: `profile`, `settings` (never a secret), `fields` (custom field
definitions) and `books`, each book with all its columns, its `notes`, its `reading_sessions`
and its `field_values` (an object from field name to value). Rows carry every column their table
has, so a column BookLogr adds later is backed up without a change here.
"""

from __future__ import annotations

FORMAT = "booklogr-backup"
VERSION = 1

# Columns that never leave the database: BookLogr's Mastodon access token (user_settings), and
# any password or token column a table may carry.
SECRET_COLUMNS = ("mastodon_access_token", "password", "password_hash", "access_token")


def without_secrets(row_sql: str) -> str:
    """SQL for a jsonb row value with the secret columns removed."""
    removed = " - ".join(f"'{c}'" for c in SECRET_COLUMNS)
    return f"({row_sql} - {removed})"
