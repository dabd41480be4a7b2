"""html_export and json_export run through the runner on a real database."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.worker.runner import Runner

from tests.helpers import insert_task, library_of, seed_books, task_row

HOSTILE = {
    "title": "<script>alert('title')</script>",
    "author": '" onmouseover="alert(1)" x="',
    "description": "'><img src=x onerror=alert(2)>&amp; already-escaped",
    "isbn": "<b>978</b>",
    "note": "</p><script>alert(3)</script><a href='javascript:alert(4)'>x</a>",
}


def _run(settings: Settings, conn: Any, task_type: str, owner: int) -> int:
    task_id = insert_task(conn, task_type, {"owner_id": owner}, owner)
    assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)
    return task_id


def _file(conn: Any, export_folder: Path, table: str, task_id: int) -> Path:
    row = conn.execute(f"SELECT * FROM {table} WHERE task_id = %s", (task_id,)).fetchone()
    assert row is not None, f"no {table} row"
    return export_folder / row["filename"]


def _hostile_book(conn: Any, owner: int) -> None:
    book = conn.execute(
        """INSERT INTO books (title, subtitle, author, description, isbn, reading_status,
                              current_page, total_pages, rating, owner_id)
           VALUES (%(title)s, %(title)s, %(author)s, %(description)s, %(isbn)s, %(title)s,
                   1, 2, 3.5, %(owner)s) RETURNING id""",
        {**HOSTILE, "owner": owner},
    ).fetchone()
    conn.execute(
        "INSERT INTO notes (book_id, content) VALUES (%s, %s)", (book["id"], HOSTILE["note"])
    )


def _as_db_values(book: dict[str, Any]) -> dict[str, Any]:
    def when(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    return {
        **book,
        "created_on": when(book["created_on"]),
        "notes": [{**n, "created_on": when(n["created_on"])} for n in book["notes"]],
    }


# --- JSON --------------------------------------------------------------------------------------


def test_json_equals_the_database(settings: Settings, conn: Any, export_folder: Path) -> None:
    seed_books(conn, owner_id=5)
    _hostile_book(conn, owner=5)
    conn.execute("UPDATE notes SET visibility = 'public', quote_page = NULL WHERE id % 3 = 0")
    seed_books(conn, owner_id=6, count=3)  # someone else's
    task_id = _run(settings, conn, "json_export", 5)

    text = _file(conn, export_folder, "json_export", task_id).read_text(encoding="utf-8")
    exported = json.loads(text, parse_float=Decimal)
    assert [_as_db_values(b) for b in exported] == library_of(conn, 5)
    assert any(n["visibility"] == "public" for b in exported for n in b["notes"])
    # Exact values: the formula-looking titles are not neutralised.
    assert '=HYPERLINK("http://evil")' in {b["title"] for b in exported}
    result = conn.execute(
        "SELECT result FROM task_results WHERE task_id = %s", (task_id,)
    ).fetchone()["result"]
    assert result["format"] == "json" and result["books"] == len(exported)


# What BookLogr's own JSON export writes for each book and note (reference/booklogr-app.md).
BOOKLOGR_BOOK_KEYS = {
    "title", "isbn", "description", "reading_status", "current_page", "total_pages", "author",
    "rating", "notes",
}  # fmt: skip
BOOKLOGR_NOTE_KEYS = {"content", "quote_page", "visibility", "created_on"}
# What this export adds (docs/formats.md): the book's id, subtitle and when it was added.
ADDED_BOOK_KEYS = {"id", "subtitle", "created_on"}


def test_json_has_every_key_booklogrs_json_export_writes(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=5)
    task_id = _run(settings, conn, "json_export", 5)
    exported = json.loads(_file(conn, export_folder, "json_export", task_id).read_text())
    assert exported and any(b["notes"] for b in exported)
    for book in exported:
        assert set(book) == BOOKLOGR_BOOK_KEYS | ADDED_BOOK_KEYS
        # A number (or null for unrated) where BookLogr writes a string ("4.50" or "None").
        assert book["rating"] is None or isinstance(book["rating"], int | float)
        for note in book["notes"]:
            assert set(note) == BOOKLOGR_NOTE_KEYS


def test_json_of_an_empty_library_is_an_empty_array(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    task_id = _run(settings, conn, "json_export", 9)
    assert json.loads(_file(conn, export_folder, "json_export", task_id).read_text()) == []


def test_json_streams_past_one_batch(settings: Settings, conn: Any, export_folder: Path) -> None:
    conn.execute(
        """INSERT INTO books (title, isbn, owner_id)
           SELECT 'Book ' || i, i::text, 5 FROM generate_series(1, 2500) i"""
    )
    task_id = _run(settings, conn, "json_export", 5)
    exported = json.loads(_file(conn, export_folder, "json_export", task_id).read_text())
    assert [b["title"] for b in exported] == [f"Book {i}" for i in range(1, 2501)]


# --- HTML --------------------------------------------------------------------------------------


def test_html_escapes_every_user_string(settings: Settings, conn: Any, export_folder: Path) -> None:
    _hostile_book(conn, owner=5)
    task_id = _run(settings, conn, "html_export", 5)
    page = _file(conn, export_folder, "html_export", task_id).read_text(encoding="utf-8")

    for value in HOSTILE.values():
        assert value not in page
    assert "<script" not in page.lower()
    assert "<img" not in page and "<b>" not in page
    assert page.count("<a ") == page.count('<a href="#')  # the report's own links only
    assert "onmouseover=" not in page.replace("&#34; onmouseover=&#34;", "")
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page
    assert "&#34; onmouseover=&#34;alert(1)&#34; x=&#34;" in page
    assert "&amp;amp; already-escaped" in page
    assert "&lt;/p&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page


def test_html_lists_the_owners_books_self_contained(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    books = seed_books(conn, owner_id=5)
    seed_books(conn, owner_id=6, count=2)
    task_id = _run(settings, conn, "html_export", 5)
    page = _file(conn, export_folder, "html_export", task_id).read_text(encoding="utf-8")

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<article>") == len(books)
    assert f"{len(books)} books" in page
    assert "Book 0" not in page  # owner 6's books
    assert "Ünïcödé — 日本語の本 📚" in page
    assert "second\nnote ✓" in page
    assert "3.25 / 5" in page  # a rating
    # Self-contained, phone-sized and printable: inline CSS, no external anything.
    assert re.search(r"\bsrc\s*=", page) is None
    assert re.findall(r'\bhref\s*=\s*"(?!#)', page) == []  # links within the page only
    assert "<link" not in page and "@import" not in page and re.findall(r"url\((?!#)", page) == []
    assert 'name="viewport"' in page and "@media print" in page
    result = conn.execute(
        "SELECT result FROM task_results WHERE task_id = %s", (task_id,)
    ).fetchone()["result"]
    assert result["format"] == "html" and result["books"] == len(books)


def test_html_of_an_empty_library(settings: Settings, conn: Any, export_folder: Path) -> None:
    task_id = _run(settings, conn, "html_export", 9)
    page = _file(conn, export_folder, "html_export", task_id).read_text(encoding="utf-8")
    assert "No books yet." in page and "<article>" not in page


def test_html_streams_past_one_batch(settings: Settings, conn: Any, export_folder: Path) -> None:
    conn.execute(
        """INSERT INTO books (title, owner_id)
           SELECT 'Book #' || i, 5 FROM generate_series(1, 2500) i"""
    )
    task_id = _run(settings, conn, "html_export", 5)
    page = _file(conn, export_folder, "html_export", task_id).read_text(encoding="utf-8")
    assert page.count("<article>") == 2500
    # One group (no status), by title.
    assert page.index("Book #1<") < page.index("Book #1000<") < page.index("Book #2<")
