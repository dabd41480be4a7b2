"""Read dates become finished reading sessions (in the import's transaction), and an import that
creates a BookLogr profile also creates the user_settings row BookLogr expects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db.migrate import migrate
from booklogr_tasks.db.pool import connect

from tests.integration.test_booklogr_db import BOOKLOGR_SCHEMA
from tests.integration.test_imports import (
    GOODREADS_HEADER,
    STORYGRAPH_HEADER,
    csv_text,
    run_import,
)

# BookLogr's user_settings (api/models.py: UserSettings), as SQLAlchemy creates it.
USER_SETTINGS = """
CREATE TABLE user_settings (
    id serial PRIMARY KEY,
    owner_id integer UNIQUE,
    send_book_events boolean DEFAULT false,
    mastodon_url varchar,
    mastodon_access_token varchar
);
INSERT INTO user_settings (owner_id, send_book_events) VALUES (1, true);
"""


def sessions(conn: Any) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT b.title, s.status, s.start_date, s.end_date
             FROM reading_sessions s JOIN books b ON b.id = s.book_id ORDER BY s.id"""
    ).fetchall()


def test_goodreads_read_dates_become_finished_sessions(settings: Settings, conn: Any) -> None:
    rows = [
        {"Title": "Read Once", "Author": "A", "ISBN": '=""', "ISBN13": '=""', "My Rating": "0",
         "Exclusive Shelf": "read", "Date Read": "2021/03/04"},
        {"Title": "Never Read", "Author": "B", "ISBN": '=""', "ISBN13": '=""', "My Rating": "0",
         "Exclusive Shelf": "to-read"},
        {"Title": "Gave Up", "Author": "C", "ISBN": '=""', "ISBN13": '=""', "My Rating": "0",
         "Exclusive Shelf": "dnf", "Date Read": "2022/01/02"},
    ]  # fmt: skip
    report = run_import(settings, conn, "goodreads_import", csv_text(GOODREADS_HEADER, rows))
    assert report["status"] == "success" and report["result"]["reading_sessions"] == 2
    assert sessions(conn) == [
        {"title": "Read Once", "status": "Read",
         "start_date": datetime(2021, 3, 4), "end_date": datetime(2021, 3, 4)},
        {"title": "Gave Up", "status": "Did not finish",
         "start_date": datetime(2022, 1, 2), "end_date": datetime(2022, 1, 2)},
    ]  # fmt: skip


def test_storygraph_sessions_start_when_dates_read_says(settings: Settings, conn: Any) -> None:
    rows = [
        {"Title": "Twice", "Authors": "A", "Read Status": "read", "Last Date Read": "2023/02/01",
         "Dates Read": "2022/05/01-2022/05/09, 2023/01/20-2023/02/01"},
        {"Title": "Only Range", "Authors": "B", "Read Status": "read",
         "Dates Read": "2020/07/01-2020/07/03"},
        {"Title": "Only Last", "Authors": "C", "Read Status": "read",
         "Last Date Read": "2019/09/09"},
        {"Title": "Unread", "Authors": "D", "Read Status": "to-read"},
    ]  # fmt: skip
    report = run_import(settings, conn, "storygraph_import", csv_text(STORYGRAPH_HEADER, rows))
    assert report["status"] == "success", report["error"]
    assert sessions(conn) == [
        {"title": "Twice", "status": "Read",
         "start_date": datetime(2023, 1, 20), "end_date": datetime(2023, 2, 1)},
        {"title": "Only Range", "status": "Read",
         "start_date": datetime(2020, 7, 1), "end_date": datetime(2020, 7, 3)},
        {"title": "Only Last", "status": "Read",
         "start_date": datetime(2019, 9, 9), "end_date": datetime(2019, 9, 9)},
    ]  # fmt: skip


def test_sessions_roll_back_with_the_books(settings: Settings, conn: Any) -> None:
    conn.execute(
        "ALTER TABLE reading_sessions ADD CONSTRAINT recent CHECK (end_date > '2022-01-01')"
    )
    rows = [
        {"Title": "New", "Author": "A", "ISBN": '=""', "ISBN13": '=""', "My Rating": "0",
         "Exclusive Shelf": "read", "Date Read": "2023/03/04"},
        {"Title": "Old", "Author": "B", "ISBN": '=""', "ISBN13": '=""', "My Rating": "0",
         "Exclusive Shelf": "read", "Date Read": "2021/03/04"},
    ]  # fmt: skip
    report = run_import(settings, conn, "goodreads_import", csv_text(GOODREADS_HEADER, rows))
    assert report["status"] == "failure" and "internal error" in report["error"]
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 0
    assert sessions(conn) == []


# --- a BookLogr-shaped database ------------------------------------------------------------------


@pytest.fixture
def booklogr_db(
    empty_db_url: str, export_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    with connect(empty_db_url, autocommit=True) as conn:
        conn.execute(BOOKLOGR_SCHEMA.encode())
        conn.execute(USER_SETTINGS.encode())
    migrate(empty_db_url)
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    monkeypatch.setenv("EXPORT_FOLDER", str(export_folder))
    monkeypatch.delenv("EXPORT_BUCKET", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_an_import_that_creates_a_profile_creates_its_user_settings(
    booklogr_db: Settings,
) -> None:
    text = "Title,Authors,ISBN/UID,Read Status,Star Rating\r\nDune,Frank Herbert,,read,\r\n"
    with connect(booklogr_db.database_url, autocommit=True) as conn:
        for owner in (1, 7, 7):  # 1 has a profile and settings; 7 has neither
            report = run_import(booklogr_db, conn, "storygraph_import", text, owner=owner)
            assert report["status"] == "success", report["error"]
        settings_rows = conn.execute(
            "SELECT owner_id, send_book_events FROM user_settings ORDER BY id"
        ).fetchall()
        assert settings_rows == [
            {"owner_id": 1, "send_book_events": True},
            {"owner_id": 7, "send_book_events": False},
        ]
        profile = conn.execute("SELECT display_name FROM profiles WHERE owner_id = 7").fetchone()
        assert profile == {"display_name": "user7"}


def test_an_existing_profile_gets_no_settings_row(booklogr_db: Settings) -> None:
    """Only an import that creates the profile adds settings: BookLogr's own users keep theirs."""
    text = "Title,Authors,ISBN/UID,Read Status,Star Rating\r\nEmma,Jane Austen,,read,\r\n"
    with connect(booklogr_db.database_url, autocommit=True) as conn:
        report = run_import(booklogr_db, conn, "storygraph_import", text, owner=3)
        assert report["status"] == "success", report["error"]
        found = conn.execute("SELECT owner_id FROM user_settings WHERE owner_id = 3").fetchone()
        assert found is None
