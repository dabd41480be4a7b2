"""Backups in tests: a user's whole BookLogr data seeded, a backup taken, a backup restored."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db.pool import connect
from booklogr_tasks.worker.runner import Runner

from tests.helpers import insert_task, task_row


def backup_text(settings: Settings, owner: int) -> str:
    """The backup document of `owner`, made by a backup_export task as any export is."""
    with connect(settings.database_url, autocommit=True) as conn:
        task_id = insert_task(conn, "backup_export", {"owner_id": owner}, owner)
        assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)
        row = conn.execute(
            "SELECT filename FROM exports WHERE format = 'backup' AND task_id = %s", (task_id,)
        ).fetchone()
        listed = conn.execute(
            "SELECT count(*) AS n FROM files WHERE owner_id = %s AND filename = %s",
            (owner, row["filename"]),
        ).fetchone()
        assert listed["n"] == 1  # BookLogr's web app lists it
    return (settings.export_folder / row["filename"]).read_text("utf-8")


def backup_of(settings: Settings, owner: int) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(backup_text(settings, owner), parse_float=Decimal)
    return document


def restore(settings: Settings, conn: Any, owner: int, text: str) -> dict[str, Any]:
    """Run a backup_import of `text` for `owner`; the task's row with its result."""
    task_id = insert_task(conn, "backup_import", {"owner_id": owner, "csv": text}, owner)
    Runner(settings, "w").run_by_id(task_id)
    row = conn.execute("SELECT result FROM task_results WHERE task_id = %s", (task_id,))
    stored = row.fetchone()
    return {**task_row(conn, task_id), "result": stored["result"] if stored else None}


def seed_user(conn: Any, owner: int, name: str = "reader") -> None:
    """Everything a BookLogr user can have: profile, settings with a secret, fields, books with
    notes, sessions and field values."""
    conn.execute(
        "INSERT INTO profiles (display_name, visibility, owner_id, profile_picture) "
        "VALUES (%s, 'public', %s, 'pic.png')",
        (name, owner),
    )
    conn.execute(
        "INSERT INTO user_settings (owner_id, send_book_events, mastodon_url, "
        "mastodon_access_token, created_at) VALUES (%s, true, 'https://m.example', "
        "'SECRET-TOKEN', '2024-01-01 00:00:00')",
        (owner,),
    )
    shelf = conn.execute(
        "INSERT INTO fields (owner_id, name, field_type, show_order, options, created_at) "
        "VALUES (%s, 'Shelf', 'select', 1, '[\"a\",\"b\"]', '2024-01-01') RETURNING id",
        (owner,),
    ).fetchone()["id"]
    loaned = conn.execute(
        "INSERT INTO fields (owner_id, name, field_type, show_order, created_at) "
        "VALUES (%s, 'Loaned to', 'text', 2, '2024-01-02') RETURNING id",
        (owner,),
    ).fetchone()["id"]
    dune = conn.execute(
        "INSERT INTO books (title, subtitle, isbn, description, author, reading_status, "
        "current_page, total_pages, rating, owner_id, created_on) VALUES ('Dune', 'A novel', "
        "'9780441172719', 'Spice', 'Frank Herbert', 'Read', 412, 412, 4.50, %s, "
        "'2024-01-02 03:04:05') RETURNING id",
        (owner,),
    ).fetchone()["id"]
    conn.execute(
        "INSERT INTO books (title, author, reading_status, owner_id, created_on) "
        "VALUES ('No ISBN', 'Someone', 'To be read', %s, '2024-02-02')",
        (owner,),
    )
    conn.execute(
        "INSERT INTO notes (book_id, content, quote_page, visibility, created_on) "
        "VALUES (%s, 'Fear is the mind-killer.', 8, 'public', '2024-01-05')",
        (dune,),
    )
    conn.execute(
        "INSERT INTO reading_sessions (book_id, status, start_date, end_date) "
        "VALUES (%s, 'Read', '2024-01-03', '2024-01-20')",
        (dune,),
    )
    conn.execute(
        "INSERT INTO field_values (book_id, field_id, value) VALUES (%s, %s, 'a'), (%s, %s, 'Ann')",
        (dune, shelf, dune, loaned),
    )


# What differs between two backups of the same data in two accounts (ids, owners, timestamps
# of the export itself).
_IDS = {"id", "owner_id", "book_id", "field_id"}


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    def strip(row: Any) -> Any:
        if isinstance(row, dict):
            return {k: strip(v) for k, v in row.items() if k not in _IDS}
        if isinstance(row, list):
            return [strip(v) for v in row]
        return row

    out = strip({k: v for k, v in document.items() if k != "exported_at"})
    assert isinstance(out, dict)
    return out
