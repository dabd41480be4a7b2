"""backup_export holds everything a user has in BookLogr (never a secret); backup_import
restores it into an account, all or nothing, and never doubles anything."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db.pool import connect
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.integration.backup_support import (
    backup_of,
    backup_text,
    comparable,
    restore,
    seed_user,
)
from tests.integration.test_import_reading_and_users import booklogr_db  # noqa: F401


def test_a_backup_holds_everything_but_secrets(settings: Settings, conn: Any) -> None:
    seed_user(conn, 1)
    seed_user(conn, 2, name="other")  # never in user 1's backup
    document = backup_of(settings, 1)

    assert (document["format"], document["version"], document["owner_id"]) == (
        "booklogr-backup",
        1,
        1,
    )
    assert document["profile"]["display_name"] == "reader"
    assert document["profile"]["profile_picture"] == "pic.png"
    assert document["settings"]["mastodon_url"] == "https://m.example"
    assert "mastodon_access_token" not in document["settings"]
    assert "SECRET-TOKEN" not in backup_text(settings, 1)
    assert [f["name"] for f in document["fields"]] == ["Shelf", "Loaned to"]
    assert [b["title"] for b in document["books"]] == ["Dune", "No ISBN"]
    dune = document["books"][0]
    assert dune["subtitle"] == "A novel" and dune["rating"] == Decimal("4.50")
    assert dune["created_on"] == "2024-01-02T03:04:05"
    assert [n["content"] for n in dune["notes"]] == ["Fear is the mind-killer."]
    assert dune["notes"][0]["quote_page"] == 8 and dune["notes"][0]["visibility"] == "public"
    assert [(s["status"], s["end_date"]) for s in dune["reading_sessions"]] == [
        ("Read", "2024-01-20T00:00:00")
    ]
    assert dune["field_values"] == {"Shelf": "a", "Loaned to": "Ann"}
    assert document["books"][1]["field_values"] == {}


def test_an_empty_account_backs_up_as_an_empty_document(settings: Settings) -> None:
    document = backup_of(settings, 9)
    assert document["profile"] is None and document["settings"] is None
    assert document["fields"] == [] and document["books"] == []


def test_restore_reproduces_the_backup_and_twice_adds_nothing(
    settings: Settings, conn: Any
) -> None:
    seed_user(conn, 1)
    original = backup_text(settings, 1)
    first = restore(settings, conn, 2, original)
    assert first["status"] == "success", first
    assert first["result"]["imported"] == 2 and first["result"]["field_values"] == 2
    assert first["result"]["profile"] == "restored without its display name (taken)"
    restored = backup_of(settings, 2)
    expected = comparable(json.loads(original, parse_float=Decimal))
    expected["profile"]["display_name"] = None  # "reader" belongs to user 1
    assert comparable(restored) == expected
    assert "mastodon_access_token" not in restored["settings"]

    again = restore(settings, conn, 2, original)
    assert again["status"] == "success", again
    assert again["result"]["imported"] == 0 and again["result"]["skipped_duplicates"] == 2
    assert again["result"]["fields_added"] == 0
    assert again["result"]["profile"] == "kept" and again["result"]["settings"] == "kept"
    assert comparable(backup_of(settings, 2)) == expected


def test_restore_keeps_what_the_account_has(settings: Settings, conn: Any) -> None:
    seed_user(conn, 1)
    conn.execute("INSERT INTO profiles (display_name, owner_id) VALUES ('mine', 2)")
    conn.execute("INSERT INTO user_settings (owner_id, send_book_events) VALUES (2, false)")
    conn.execute("INSERT INTO fields (owner_id, name, field_type) VALUES (2, 'Shelf', 'text')")
    conn.execute(
        "INSERT INTO books (title, isbn, author, owner_id) "
        "VALUES ('Dune (again)', '0441172717', 'F. H.', 2)"  # the same book by its ISBN-10
    )
    report = restore(settings, conn, 2, backup_text(settings, 1))
    assert report["status"] == "success", report
    assert report["result"]["imported"] == 1 and report["result"]["skipped_duplicates"] == 1
    assert report["result"]["fields_added"] == 1
    document = backup_of(settings, 2)
    assert document["profile"]["display_name"] == "mine"
    assert document["settings"]["send_book_events"] is False
    assert [f["name"] for f in document["fields"]] == ["Shelf", "Loaned to"]
    assert [b["title"] for b in document["books"]] == ["Dune (again)", "No ISBN"]
    # The skipped book's notes, sessions and values were not added to the one already there.
    assert document["books"][0]["notes"] == [] and document["books"][0]["field_values"] == {}


def _fails(settings: Settings, conn: Any, text: str) -> str:
    report = restore(settings, conn, 2, text)
    assert report["status"] == "failure", report
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 0
    return str(report["error"])


def test_files_that_are_not_a_restorable_backup_fail_saying_which(
    settings: Settings, conn: Any
) -> None:
    assert "not valid JSON (line 1" in _fails(settings, conn, '{"format": "booklogr-backup"')
    assert "backup: it is not JSON; upload other" in _fails(settings, conn, "title,isbn\nDune,1\n")
    assert 'has no "format"' in _fails(settings, conn, '[{"title": "Dune"}]')
    assert 'is a "goodreads" file, not a BookLogr backup' in _fails(
        settings, conn, '{"format": "goodreads", "version": 1}'
    )
    newer = _fails(settings, conn, '{"format": "booklogr-backup", "version": 2, "books": []}')
    assert "version 2, newer than the version 1" in newer
    broken = '{"format": "booklogr-backup", "version": 1, "books": [{"title": "A"}, 3]}'
    assert "broken: books[1] is not an object" in _fails(settings, conn, broken)


def test_a_restore_that_fails_midway_leaves_nothing(settings: Settings, conn: Any) -> None:
    document = {
        "format": "booklogr-backup",
        "version": 1,
        "fields": [{"name": "Shelf"}],
        "books": [
            {"title": "Fine", "field_values": {"Shelf": "x"}},
            {"title": "Bad", "current_page": "not a number"},
        ],
    }
    report = restore(settings, conn, 2, json.dumps(document))
    assert report["status"] == "failure", report
    assert report["error"].startswith("the BookLogr backup is broken: a value does not fit")
    for table in ("books", "fields", "field_values", "profiles"):
        assert conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] == 0


# --- the round trip, for any library -------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
_when = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1))
_note = st.fixed_dictionaries(
    {"content": _text, "quote_page": st.none() | st.integers(0, 5000),
     "visibility": st.sampled_from(["hidden", "public"]), "created_on": _when}
)  # fmt: skip
_session = st.fixed_dictionaries(
    {"status": st.sampled_from(["Read", "Currently reading", "Did not finish"]),
     "start_date": _when, "end_date": st.none() | _when}
)  # fmt: skip
_book = st.fixed_dictionaries(
    {
        "title": _text,
        "isbn": st.none() | st.from_regex(r"97[89][0-9]{10}", fullmatch=True),
        "author": st.none() | _text,
        "description": st.none() | _text,
        "rating": st.none() | st.decimals(0, 5, places=2),
        "current_page": st.none() | st.integers(0, 10_000),
        "notes": st.lists(_note, max_size=2),
        "sessions": st.lists(_session, max_size=2),
        "values": st.dictionaries(st.sampled_from(["F1", "F2"]), _text, max_size=2),
    }
)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(books=st.lists(_book, max_size=6))
def test_any_library_round_trips(
    settings: Settings, conn: Any, books: list[dict[str, Any]]
) -> None:
    conn.execute(
        "TRUNCATE books, notes, reading_sessions, fields, field_values, profiles, "
        "user_settings, tasks CASCADE"
    )
    fields = {
        name: conn.execute(
            "INSERT INTO fields (owner_id, name) VALUES (1, %s) RETURNING id", (name,)
        ).fetchone()["id"]
        for name in ("F1", "F2")
    }
    isbns: set[str] = set()
    for i, b in enumerate(books):
        # Books that repeat one another by the duplicate rule are restored once, by design:
        # here every book is its own (a distinct title, no repeated ISBN).
        b["title"] = f"B{i} {b['title']}"
        if b["isbn"] in isbns:
            b["isbn"] = None
        isbns.add(b["isbn"])
        book_id = conn.execute(
            "INSERT INTO books (title, isbn, author, description, rating, current_page, owner_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, 1) RETURNING id",
            (b["title"], b["isbn"], b["author"], b["description"], b["rating"], b["current_page"]),
        ).fetchone()["id"]
        for n in b["notes"]:
            conn.execute(
                "INSERT INTO notes (book_id, content, quote_page, visibility, created_on) "
                "VALUES (%s, %s, %s, %s, %s)",
                (book_id, n["content"], n["quote_page"], n["visibility"], n["created_on"]),
            )
        for s in b["sessions"]:
            conn.execute(
                "INSERT INTO reading_sessions (book_id, status, start_date, end_date) "
                "VALUES (%s, %s, %s, %s)",
                (book_id, s["status"], s["start_date"], s["end_date"]),
            )
        for name, value in b["values"].items():
            conn.execute(
                "INSERT INTO field_values (book_id, field_id, value) VALUES (%s, %s, %s)",
                (book_id, fields[name], value),
            )
    original = backup_text(settings, 1)
    report = restore(settings, conn, 2, original)
    assert report["status"] == "success", report
    expected = comparable(json.loads(original, parse_float=Decimal))
    assert report["result"]["imported"] == len(books)
    assert comparable(backup_of(settings, 2)) == expected
    again = restore(settings, conn, 2, original)
    assert again["result"]["imported"] == 0


def test_restore_into_a_booklogr_database_whose_books_need_a_profile(
    booklogr_db: Settings,  # noqa: F811
) -> None:
    with connect(booklogr_db.database_url, autocommit=True) as conn:
        original = backup_text(booklogr_db, 1)  # BookLogr's user 1: profile "reader", 2 books
        report = restore(booklogr_db, conn, 7, original)
        assert report["status"] == "success", report["error"]
        assert report["result"]["imported"] == 2
        profile = conn.execute("SELECT display_name FROM profiles WHERE owner_id = 7").fetchone()
        assert profile == {"display_name": None}  # "reader" is user 1's
        settings_row = conn.execute(
            "SELECT send_book_events FROM user_settings WHERE owner_id = 7"
        ).fetchone()
        assert settings_row == {"send_book_events": True}  # user 1's settings, restored
        bare = '{"format": "booklogr-backup", "version": 1, "books": [{"title": "Alone"}]}'
        report = restore(booklogr_db, conn, 9, bare)
        assert report["status"] == "success", report["error"]
        profile = conn.execute("SELECT display_name FROM profiles WHERE owner_id = 9").fetchone()
        assert profile == {"display_name": "user9"}
