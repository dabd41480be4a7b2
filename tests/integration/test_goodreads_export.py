"""goodreads_export through the runner: Goodreads' format exactly, and back in through this
service's own goodreads_import."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs.exports.goodreads import GOODREADS_COLUMNS
from booklogr_tasks.worker.runner import Runner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.helpers import insert_task, seed_books, task_row

# Copied from the formats reference, not from the code under test.
GOODREADS_HEADER = (
    "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,Average Rating,"
    "Publisher,Binding,Number of Pages,Year Published,Original Publication Year,Date Read,"
    "Date Added,Bookshelves,Bookshelves with positions,Exclusive Shelf,My Review,Spoiler,"
    "Private Notes,Read Count,Owned Copies"
)
STATUSES = ("Read", "Currently reading", "To be read", "Did not finish")


def _export(settings: Settings, conn: Any, owner: int) -> str:
    task_id = insert_task(conn, "goodreads_export", {"owner_id": owner}, owner)
    assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)
    row = conn.execute(
        "SELECT filename FROM goodreads_export WHERE task_id = %s", (task_id,)
    ).fetchone()
    assert row is not None, "no goodreads_export row"
    path = settings.export_folder / row["filename"]
    return path.read_bytes().decode("utf-8")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _book(conn: Any, owner: int, **values: Any) -> int:
    columns = {"title": "A book", "owner_id": owner, **values}
    names = ", ".join(columns)
    marks = ", ".join(f"%({c})s" for c in columns)
    row = conn.execute(f"INSERT INTO books ({names}) VALUES ({marks}) RETURNING id", columns)
    return int(row.fetchone()["id"])


def test_header_and_column_order_are_goodreads(settings: Settings, conn: Any) -> None:
    seed_books(conn, owner_id=5, count=3)
    text = _export(settings, conn, 5)
    assert text.splitlines()[0] == GOODREADS_HEADER
    assert ",".join(GOODREADS_COLUMNS) == GOODREADS_HEADER
    assert all(len(r) == 24 for r in csv.reader(io.StringIO(text, newline="")))


def test_an_empty_library_is_the_header_alone(settings: Settings, conn: Any) -> None:
    assert _export(settings, conn, 9) == GOODREADS_HEADER + "\r\n"


def test_isbns_are_formulas_in_the_column_of_their_length(settings: Settings, conn: Any) -> None:
    for isbn in ("978-0-547-92822-7", "054792822x", "0547928220", "B00ASIN123", None, "12345"):
        _book(conn, 5, isbn=isbn, title=f"isbn {isbn}")
    text = _export(settings, conn, 5)
    cells = [(r["ISBN"], r["ISBN13"]) for r in _rows(text)]
    assert cells == [
        ('=""', '="9780547928227"'),
        ('="054792822X"', '=""'),
        ('="0547928220"', '=""'),
        ('=""', '=""'),  # an ASIN is not an ISBN: importers would match it to nothing
        ('=""', '=""'),
        ('=""', '=""'),
    ]
    # In the file, exactly Goodreads' spelling.
    assert '"=""9780547928227"""' in text and ',"=""""",' in text


def test_shelves_ratings_pages_and_dates(settings: Settings, conn: Any) -> None:
    ratings = [None, Decimal("0"), Decimal("0.3"), Decimal("1.49"), Decimal("2.5"), Decimal("5")]
    ids = []
    for status, rating in zip(itertools.cycle((*STATUSES, None, "Paused")), ratings, strict=False):
        ids.append(
            _book(
                conn,
                5,
                reading_status=status,
                rating=rating,
                total_pages=len(ids) * 100 or None,
                created_on=datetime(2020, 1, 2 + len(ids), 10, 0),
            )
        )
    # The first book was finished twice; the last time counts as Date Read.
    for end in (datetime(2021, 3, 4, 23, 59), datetime(2022, 7, 8, 1, 0)):
        conn.execute(
            """INSERT INTO reading_sessions (book_id, status, start_date, end_date)
               VALUES (%s, 'Read', %s, %s)""",
            (ids[0], datetime(2021, 1, 1), end),
        )
    conn.execute(  # an open session and a given-up one are not reads
        """INSERT INTO reading_sessions (book_id, status, start_date, end_date)
           VALUES (%s, 'Currently reading', '2023-01-01', NULL),
                  (%s, 'Did not finish', '2023-01-01', '2023-02-01')""",
        (ids[1], ids[3]),
    )
    rows = _rows(_export(settings, conn, 5))

    assert [r["Exclusive Shelf"] for r in rows] == [
        "read", "currently-reading", "to-read", "did-not-finish", "to-read", "to-read"
    ]  # fmt: skip
    # As in Goodreads' own files: the exclusive shelf is listed among the shelves, except read.
    assert [r["Bookshelves"] for r in rows] == [
        "", "currently-reading", "to-read", "did-not-finish", "to-read", "to-read"
    ]  # fmt: skip
    # 0 = unrated; half up; a rating under 1 is still a rating.
    assert [r["My Rating"] for r in rows] == ["0", "0", "1", "1", "3", "5"]
    assert [r["Number of Pages"] for r in rows] == ["", "100", "200", "300", "400", "500"]
    assert [r["Date Read"] for r in rows] == ["2022/07/08", "", "", "", "", ""]
    assert [r["Date Added"] for r in rows] == [f"2020/01/0{d}" for d in range(2, 8)]
    assert [r["Read Count"] for r in rows] == ["2", "0", "0", "0", "0", "0"]
    assert {r["Owned Copies"] for r in rows} == {"0"}


def test_notes_become_review_and_private_notes(settings: Settings, conn: Any) -> None:
    book = _book(conn, 5, title="Noted")
    for content, page, visibility in (
        ("Loved it.\nTruly.", None, "public"),
        ("A quote", 42, "public"),
        ("just for me", None, "hidden"),
        ("=also mine", 7, None),
    ):
        conn.execute(
            "INSERT INTO notes (book_id, content, quote_page, visibility) VALUES (%s, %s, %s, %s)",
            (book, content, page, visibility),
        )
    _book(conn, 5, title="No notes")
    noted, bare = _rows(_export(settings, conn, 5))
    assert noted["My Review"] == "Loved it.<br/>Truly.<br/><br/>p. 42: A quote"
    assert noted["Private Notes"] == "just for me\n\np. 7: =also mine"
    assert bare["My Review"] == bare["Private Notes"] == ""


def test_formula_cells_are_neutralised_but_isbns_stay_goodreads_formulas(
    settings: Settings, conn: Any
) -> None:
    seed_books(conn, owner_id=5)
    conn.execute("UPDATE notes SET content = '=1+1', visibility = 'public' WHERE id % 2 = 0")
    conn.execute("UPDATE notes SET content = '@SUM(A1)' WHERE id % 2 = 1")
    rows = _rows(_export(settings, conn, 5))
    isbn_cells = {"ISBN", "ISBN13"}
    for row in rows:
        for column, cell in row.items():
            if column in isbn_cells:
                assert cell.startswith('="') and cell.endswith('"'), cell
                assert cell[2:-1].isalnum() or cell == '=""', cell
            else:
                assert not cell or cell[0] not in "=+-@\t\r", (column, cell)
    titles = {r["Title"] for r in rows}
    assert '\'=HYPERLINK("http://evil")' in titles and "''=already quoted" in titles


def test_only_the_owners_books(settings: Settings, conn: Any) -> None:
    seed_books(conn, owner_id=5, count=2)
    seed_books(conn, owner_id=6, count=3)
    assert [r["Title"] for r in _rows(_export(settings, conn, 5))] == ["Book 0", "Book 1"]


# --- round trip: export, then import into another user's library --------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffd"),
    min_size=1,
    max_size=40,
).map(str.strip)
_titles = _text.filter(bool) | st.sampled_from(["=1+1", "'=x", "+cmd", "-", "@a", 'Plain, "q"'])
_isbns = st.none() | st.from_regex(r"[0-9]{9}[0-9X]|[0-9]{13}", fullmatch=True)
_ratings = (
    st.none()
    | st.integers(0, 5).map(Decimal)
    | st.decimals(0, 5, places=2, allow_nan=False, allow_infinity=False)
)
_books = st.lists(
    st.fixed_dictionaries(
        {
            "title": _titles,
            "author": st.none() | _text.filter(bool),
            "isbn": _isbns,
            "reading_status": st.sampled_from(STATUSES),
            "rating": _ratings,
            "total_pages": st.none() | st.integers(0, 100_000),
        }
    ),
    min_size=1,
    max_size=8,
)
_owners = itertools.count(100)


def _goodreads_rating(rating: Decimal | None) -> Decimal | None:
    if rating is None or rating <= 0:
        return None
    return Decimal(max(1, int(rating.quantize(Decimal(1), rounding=ROUND_HALF_UP)))).quantize(
        Decimal("0.01")
    )


def _library(conn: Any, owner: int) -> list[dict[str, Any]]:
    return list(
        conn.execute(
            """SELECT title, author, isbn, reading_status, rating, total_pages
                 FROM books WHERE owner_id = %s ORDER BY id""",
            (owner,),
        ).fetchall()
    )


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(books=_books)
def test_export_then_goodreads_import_reproduces_the_library(
    settings: Settings, conn: Any, export_folder: Path, books: list[dict[str, Any]]
) -> None:
    # Each example writes to two owners of its own in this test's database.
    source, target = next(_owners), next(_owners)
    for book in books:
        _book(conn, source, **book)
    text = _export(settings, conn, source)

    task_id = insert_task(
        conn,
        "goodreads_import",
        {"owner_id": target, "csv": text, "allow_duplicates": True},
        target,
    )
    assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)

    expected = [
        {
            **book,
            "rating": _goodreads_rating(book["rating"]),
            "total_pages": book["total_pages"] or 0,
        }
        for book in books
    ]
    assert _library(conn, target) == expected
