"""`dev --demo`'s library: a reader's own (statuses, ratings, notes, read dates), seeded once."""

from __future__ import annotations

from typing import Any

from booklogr_tasks.devtools.demo import DEMO_USER_ID, LIBRARY, curl_walkthrough, seed_demo_library

from tests.helpers import library_of

STATUSES = {"Read", "Currently reading", "To be read", "Did not finish"}


def test_the_demo_library_looks_like_a_readers_own(db_url: str, conn: Any) -> None:
    state = seed_demo_library(db_url)
    assert (state.added, state.books) == (len(LIBRARY), len(LIBRARY))
    books = library_of(conn, DEMO_USER_ID)
    assert {b["reading_status"] for b in books} == STATUSES
    assert sum(b["rating"] is not None for b in books) >= 5
    assert sum(len(b["notes"]) for b in books) >= 8
    assert {n["visibility"] for b in books for n in b["notes"]} == {"hidden", "public"}
    for book in books:
        assert book["isbn"] and len(book["isbn"]) == 13 and book["author"] and book["description"]
        checksum = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(book["isbn"]))
        assert checksum % 10 == 0, f"{book['isbn']} is not a valid ISBN-13"
        if book["reading_status"] == "Read":
            assert book["current_page"] == book["total_pages"]
        # Nothing a spreadsheet would run, no test-case text: those live in the tests.
        for text in (book["title"], book["author"], book["description"]):
            assert text[0] not in "=+-@\t\r" and "\n" not in text

    sessions = conn.execute(
        """SELECT b.reading_status, s.status, s.start_date, s.end_date
             FROM reading_sessions s JOIN books b ON b.id = s.book_id
            WHERE b.owner_id = %s""",
        (DEMO_USER_ID,),
    ).fetchall()
    assert {s["status"] for s in sessions} == STATUSES - {"To be read"}
    for session in sessions:
        assert session["status"] == session["reading_status"]
        assert (session["end_date"] is None) == (session["status"] == "Currently reading")
        assert session["end_date"] is None or session["end_date"] >= session["start_date"]
    # Read dates over more than one year, so the report has years to show.
    finished = {s["end_date"].year for s in sessions if s["status"] == "Read"}
    assert len(finished) >= 2


def test_a_user_with_books_is_left_alone_and_the_walkthrough_says_so(
    db_url: str, conn: Any
) -> None:
    conn.execute("INSERT INTO books (title, owner_id) VALUES ('My own book', %s)", (DEMO_USER_ID,))
    state = seed_demo_library(db_url)
    assert (state.added, state.books) == (0, 1)
    assert [b["title"] for b in library_of(conn, DEMO_USER_ID)] == ["My own book"]
    text = curl_walkthrough("http://127.0.0.1:8000", "tok", state)
    assert "demo library" not in text
    assert "user 1's library (1 book, already there before)" in text

    fresh = curl_walkthrough("http://127.0.0.1:8000", None, seed_demo_library(db_url))
    assert "already there" in fresh and "TOKEN" not in fresh
