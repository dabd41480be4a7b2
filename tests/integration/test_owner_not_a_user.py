"""Where BookLogr's `users` table exists, a task for an id that is nobody's fails with a
sentence saying so, and leaves nothing behind (no empty export, no orphan books)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs.books import CSV_COLUMNS
from booklogr_tasks.worker.runner import Runner

from tests.helpers import insert_task, seed_books, task_row

CSV = ",".join(CSV_COLUMNS) + "\r\nDune,,,Read,0,0,Frank Herbert,,[]\r\n"


@pytest.fixture
def users(conn: Any) -> None:
    conn.execute("CREATE TABLE users (id serial PRIMARY KEY, email varchar)")
    conn.execute("INSERT INTO users (id, email) VALUES (5, 'reader@example.org')")


@pytest.mark.parametrize(
    ("task_type", "data"),
    [("csv_export", {}), ("json_export", {}), ("booklogr_csv_import", {"csv": CSV})],
)
def test_a_task_for_an_id_that_is_no_user_fails_saying_so(
    users: None,
    settings: Settings,
    conn: Any,
    export_folder: Path,
    task_type: str,
    data: dict[str, Any],
) -> None:
    seed_books(conn, owner_id=7, count=1)  # books of an id BookLogr has no user for
    task_id = insert_task(conn, task_type, {"owner_id": 7, **data}, 7)

    assert Runner(settings, "w").run_by_id(task_id) == "failure"

    row = task_row(conn, task_id)
    assert row["error"] == (
        "There is no BookLogr account with the id 7, so there is no library to export or "
        "import into."
    )
    assert conn.execute("SELECT count(*) AS n FROM exports").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM files").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 1
    assert list(export_folder.iterdir()) == []


def test_a_users_tasks_run_as_before(users: None, settings: Settings, conn: Any) -> None:
    export = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    imported = insert_task(conn, "booklogr_csv_import", {"owner_id": 5, "csv": CSV}, 5)
    assert Runner(settings, "w").run_by_id(export) == "success"
    assert Runner(settings, "w").run_by_id(imported) == "success"
    assert conn.execute("SELECT title FROM books WHERE owner_id = 5").fetchall() == [
        {"title": "Dune"}
    ]
