"""Re-importing never duplicates, in every format: property-tested with files whose books repeat
each other by ISBN-10/ISBN-13, by title and author written differently, and within the file."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs.imports.duplicates import isbn_key, title_key
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.integration.test_calibre_import import ALL_FIELDS, calibre_csv
from tests.integration.test_imports import (
    FORMATS,
    GOODREADS_HEADER,
    STORYGRAPH_HEADER,
    csv_text,
    run_import,
)

# (ISBN-10, ISBN-13) of the same books.
ISBNS = [("0441172717", "9780441172719"), ("0141439513", "9780141439518"),
         ("0547928220", "9780547928227")]  # fmt: skip
TITLES = ["Dune", "DUNE", "Dune (Dune, #1)", "dune!", "Emma", "E.M.M.A.", "The  Hobbit", "Other"]
AUTHORS = ["Frank Herbert", "frank  herbert", "Frank Herbert, Brian Herbert", "Jane Austen"]

# One book as a file holds it: (title, author, isbn as written or None)
BookCells = tuple[str, str, str | None]


@st.composite
def written_books(draw: st.DrawFn) -> BookCells:
    isbn: str | None = None
    if draw(st.booleans()):
        ten, thirteen = draw(st.sampled_from(ISBNS))
        isbn = draw(st.sampled_from([ten, thirteen, f"{thirteen[:3]}-{thirteen[3:]}"]))
    return draw(st.sampled_from(TITLES)), draw(st.sampled_from(AUTHORS)), isbn


def booklogr_row(b: BookCells) -> dict[str, str]:
    return {"title": b[0], "author": b[1], "isbn": b[2] or "", "notes": "[]"}


def goodreads_row(b: BookCells) -> dict[str, str]:
    isbn = (b[2] or "").replace("-", "")
    return {
        "Title": b[0],
        "Author": b[1],
        "ISBN": f'="{isbn}"' if len(isbn) == 10 else '=""',
        "ISBN13": f'="{isbn}"' if len(isbn) == 13 else '=""',
        "My Rating": "0",
        "Exclusive Shelf": "read",
        "Date Read": "2021/03/04",
    }


def storygraph_row(b: BookCells) -> dict[str, str]:
    return {"Title": b[0], "Authors": b[1], "ISBN/UID": b[2] or "", "Read Status": "to-read"}


def calibre_row(b: BookCells) -> dict[str, str]:
    authors = b[1].replace(", ", " & ")
    return {"title": b[0], "authors": authors, "isbn": (b[2] or "").replace("-", "")}


FILES: dict[str, Callable[[list[BookCells]], str]] = {
    "booklogr_csv_import": lambda books: csv_text(
        FORMATS["booklogr_csv_import"], [booklogr_row(b) for b in books]
    ),
    "goodreads_import": lambda books: csv_text(GOODREADS_HEADER, [goodreads_row(b) for b in books]),
    "storygraph_import": lambda books: csv_text(
        STORYGRAPH_HEADER, [storygraph_row(b) for b in books]
    ),
    "calibre_import": lambda books: calibre_csv(ALL_FIELDS, [calibre_row(b) for b in books]),
}
_owners = itertools.count(100)


def same_book(a: dict[str, Any], b: dict[str, Any]) -> bool:
    isbn_a, isbn_b = isbn_key(a["isbn"]), isbn_key(b["isbn"])
    if isbn_a is not None and isbn_b is not None:
        return isbn_a == isbn_b
    return title_key(a["title"], a["author"]) == title_key(b["title"], b["author"])


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    task_type=st.sampled_from(sorted(FILES)),
    books=st.lists(written_books(), min_size=1, max_size=8),
    owned=st.lists(written_books(), max_size=3),
)
def test_importing_a_file_twice_adds_nothing_the_second_time(
    settings: Settings,
    conn: Any,
    task_type: str,
    books: list[BookCells],
    owned: list[BookCells],
) -> None:
    owner = next(_owners)
    for title, author, isbn in owned:  # books the owner had before, entered some other way
        conn.execute(
            "INSERT INTO books (title, author, isbn, owner_id) VALUES (%s, %s, %s, %s)",
            (title, author, isbn, owner),
        )
    text = FILES[task_type](books)

    first = run_import(settings, conn, task_type, text, owner=owner)
    assert first["status"] == "success", first["error"]
    result = first["result"]
    skipped = [d["row"] for d in result["duplicate_rows"]]
    assert result["skipped_invalid"] == []
    assert result["imported"] + len(skipped) == result["rows"] == len(books)
    assert result["skipped_duplicates"] == len(skipped) and all(
        d["reason"] for d in result["duplicate_rows"]
    )
    library = conn.execute(
        "SELECT title, author, isbn FROM books WHERE owner_id = %s ORDER BY id", (owner,)
    ).fetchall()
    # No two books of the library are the same book, unless the owner had both before.
    for i, a in enumerate(library):
        for b in library[max(i + 1, len(owned)) :]:
            assert not same_book(a, b), (a, b)

    second = run_import(settings, conn, task_type, text, owner=owner)
    assert second["status"] == "success", second["error"]
    assert second["result"]["imported"] == 0
    assert [d["row"] for d in second["result"]["duplicate_rows"]] == list(range(2, len(books) + 2))
    assert all(
        d["reason"].startswith("already in your library") or " as row " in d["reason"]
        for d in second["result"]["duplicate_rows"]
    )
    count = conn.execute("SELECT count(*) AS n FROM books WHERE owner_id = %s", (owner,))
    assert count.fetchone()["n"] == len(library)


def test_allow_duplicates_imports_every_row_again(settings: Settings, conn: Any) -> None:
    books: list[BookCells] = [("Dune", "Frank Herbert", "0441172717"), ("Dune", "F. H.", None)]
    for task_type, make in FILES.items():
        text = make(books)
        owner = next(_owners)
        for _ in range(2):
            report = run_import(settings, conn, task_type, text, owner=owner, allow=True)
            assert report["result"]["imported"] == 2, (task_type, report)


def test_a_file_with_only_a_header_fails_saying_so(settings: Settings, conn: Any) -> None:
    for task_type, make in FILES.items():
        report = run_import(settings, conn, task_type, make([]) + "\r\n\r\n")
        assert report["status"] == "failure", task_type
        assert report["error"].startswith("the file has a header but no rows"), report["error"]


def test_csv_helper_writes_what_the_rows_say() -> None:
    text = FILES["goodreads_import"]([("T", "A", "978-0441172719")])
    row = next(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert (row["ISBN13"], row["ISBN"]) == ('="9780441172719"', '=""')
