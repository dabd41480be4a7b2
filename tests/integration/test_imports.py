"""The three importers run through the runner on a real database."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.worker.runner import Runner
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import insert_task, library_of, seed_books, task_row

GOODREADS_HEADER = [
    "Book Id",
    "Title",
    "Author",
    "Author l-f",
    "Additional Authors",
    "ISBN",
    "ISBN13",
    "My Rating",
    "Average Rating",
    "Publisher",
    "Binding",
    "Number of Pages",
    "Year Published",
    "Original Publication Year",
    "Date Read",
    "Date Added",
    "Bookshelves",
    "Bookshelves with positions",
    "Exclusive Shelf",
    "My Review",
    "Spoiler",
    "Private Notes",
    "Read Count",
    "Owned Copies",
]
STORYGRAPH_HEADER = [
    "Title",
    "Authors",
    "Contributors",
    "ISBN/UID",
    "Format",
    "Read Status",
    "Date Added",
    "Last Date Read",
    "Dates Read",
    "Read Count",
    "Moods",
    "Pace",
    "Character- or Plot-Driven?",
    "Strong Character Development?",
    "Loveable Characters?",
    "Diverse Characters?",
    "Flawed Characters?",
    "Star Rating",
    "Review",
    "Content Warnings",
    "Content Warning Description",
    "Tags",
    "Owned?",
]


def csv_text(header: list[str], rows: list[dict[str, str]], bom: bool = True) -> str:
    """A file as the services write it: UTF-8 BOM, CRLF line ends, RFC 4180 quoting."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return ("\ufeff" if bom else "") + out.getvalue()


def run_import(
    settings: Settings, conn: Any, task_type: str, text: str, owner: int = 5, allow: bool = False
) -> dict[str, Any]:
    data = {"owner_id": owner, "csv": text, "allow_duplicates": allow}
    task_id = insert_task(conn, task_type, data, owner)
    Runner(settings, "w").run_by_id(task_id)
    report = task_row(conn, task_id)
    stored = conn.execute("SELECT result FROM task_results WHERE task_id = %s", (task_id,))
    row = stored.fetchone()
    return {**report, "result": row["result"] if row else None}


def books_of(conn: Any, owner: int) -> list[dict[str, Any]]:
    """What an import wrote for the owner, without the ids (which differ between owners) and
    the subtitle (no import file has one)."""
    books = library_of(conn, owner, with_ids=False)
    for book in books:
        assert book.pop("subtitle") is None
    return books


def count_books(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"])


def count_notes(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) AS n FROM notes").fetchone()["n"])


# --- Goodreads ---------------------------------------------------------------------------------

GOODREADS_ROWS = [
    {  # row 2: read, both ISBNs, rating, pages, dates, review with <br/>, private notes
        "Book Id": "5907",
        "Title": "The Hobbit, or There and Back Again",
        "Author": "J.R.R. Tolkien",
        "Author l-f": "Tolkien, J.R.R.",
        "Additional Authors": "Christopher Tolkien, Alan Lee",
        "ISBN": '="0547928220"',
        "ISBN13": '="9780547928227"',
        "My Rating": "5",
        "Average Rating": "4.29",
        "Number of Pages": "300",
        "Date Read": "2021/03/04",
        "Date Added": "2021/01/02",
        "Exclusive Shelf": "read",
        "My Review": "Loved it.<br/><br/>Second paragraph, with <b>bold</b>.",
        "Private Notes": "Lent to Sam",
        "Read Count": "1",
    },
    {  # row 3: currently reading, unrated (0), ISBN13 empty formula, ISBN-10 only
        "Title": "Dune",
        "Author": "Frank Herbert",
        "ISBN": '="0441172717"',
        "ISBN13": '=""',
        "My Rating": "0",
        "Number of Pages": "412",
        "Date Added": "2022/05/06",
        "Exclusive Shelf": "currently-reading",
    },
    {  # row 4: to-read, no ISBN at all, no pages, no dates
        "Title": 'Title with "quotes", commas\nand a newline',
        "Author": "Anonymous",
        "ISBN": '=""',
        "ISBN13": '=""',
        "My Rating": "0",
        "Exclusive Shelf": "to-read",
    },
    {  # row 5: a custom exclusive shelf
        "Title": "Custom Shelf Book",
        "Author": "Some One",
        "ISBN": '=""',
        "ISBN13": '="9780000000017"',
        "My Rating": "3",
        "Exclusive Shelf": "favorites",
    },
    {  # row 6: a rating that cannot be read
        "Title": "Broken Rating",
        "Author": "X",
        "ISBN": '=""',
        "ISBN13": '=""',
        "My Rating": "five",
        "Exclusive Shelf": "read",
    },
    {  # row 7: a did-not-finish shelf
        "Title": "Given Up",
        "Author": "Y",
        "ISBN": '=""',
        "ISBN13": '=""',
        "My Rating": "1",
        "Exclusive Shelf": "dnf",
        "Date Read": "",
    },
]


def test_goodreads_maps_every_column(settings: Settings, conn: Any) -> None:
    report = run_import(
        settings, conn, "goodreads_import", csv_text(GOODREADS_HEADER, GOODREADS_ROWS)
    )

    assert report["status"] == "success", report["error"]
    result = report["result"]
    assert result["imported"] == 5 and result["book_notes"] == 2
    assert result["skipped_duplicates"] == 0
    assert result["skipped_invalid"] == [{"row": 6, "reason": "My Rating 'five' is not a number"}]
    assert result["notes"] == [
        "Exclusive Shelf 'favorites' has no BookLogr status: imported as To be read (row 5)"
    ]
    hobbit, dune, quoted, custom, dnf = books_of(conn, 5)
    assert hobbit == {
        "title": "The Hobbit, or There and Back Again",
        "isbn": "9780547928227",
        "author": "J.R.R. Tolkien, Christopher Tolkien, Alan Lee",
        "description": None,
        "reading_status": "Read",
        "current_page": 300,
        "total_pages": 300,
        "rating": Decimal("5.00"),
        "created_on": datetime(2021, 1, 2),
        "notes": [
            {
                "content": "Loved it.\n\nSecond paragraph, with <b>bold</b>.",
                "quote_page": None,
                "visibility": "hidden",
                "created_on": datetime(2021, 3, 4),
            },
            {
                "content": "Lent to Sam",
                "quote_page": None,
                "visibility": "hidden",
                "created_on": datetime(2021, 3, 4),
            },
        ],
    }
    assert (dune["isbn"], dune["rating"], dune["reading_status"]) == (
        "0441172717",
        None,
        "Currently reading",
    )
    assert (dune["current_page"], dune["total_pages"]) == (0, 412)
    assert dune["created_on"] == datetime(2022, 5, 6) and dune["notes"] == []
    assert quoted["title"] == 'Title with "quotes", commas\nand a newline'
    assert (quoted["isbn"], quoted["reading_status"], quoted["total_pages"]) == (
        None,
        "To be read",
        0,
    )
    assert quoted["created_on"] is not None  # imported now, as BookLogr does
    assert (custom["isbn"], custom["reading_status"], custom["rating"]) == (
        "9780000000017",
        "To be read",
        Decimal("3.00"),
    )
    assert dnf["reading_status"] == "Did not finish"


def test_goodreads_without_bom_and_with_lf(settings: Settings, conn: Any) -> None:
    text = csv_text(GOODREADS_HEADER, GOODREADS_ROWS[:2], bom=False).replace("\r\n", "\n")
    report = run_import(settings, conn, "goodreads_import", text)
    assert report["status"] == "success" and report["result"]["imported"] == 2


# --- The StoryGraph ----------------------------------------------------------------------------

STORYGRAPH_ROWS = [
    {  # row 2: read, several authors, ISBN, quarter-step rating, review, dates
        "Title": "Good Omens",
        "Authors": "Terry Pratchett, Neil Gaiman",
        "Contributors": "Stephen Briggs (Narrator)",
        "ISBN/UID": "9780060853983",
        "Format": "paperback",
        "Read Status": "read",
        "Date Added": "2023/01/15",
        "Last Date Read": "2023/02/01",
        "Dates Read": "2023/01/20-2023/02/01",
        "Read Count": "1",
        "Moods": "funny, lighthearted",
        "Star Rating": "4.25",
        "Review": "Hilarious.<br>Would reread.",
        "Tags": "favourites",
        "Owned?": "Yes",
    },
    {  # row 3: StoryGraph's own UUID instead of an ISBN; did not finish; half-star rating
        "Title": "Edition Without ISBN",
        "Authors": "Solo Author",
        "ISBN/UID": "2d5b33a4-1f0b-4e8f-9a43-3c1c2b8e7a10",
        "Read Status": "did-not-finish",
        "Star Rating": "3.5",
    },
    {  # row 4: currently reading, no ISBN, no rating
        "Title": "Reading Now",
        "Authors": "A. Writer",
        "ISBN/UID": "",
        "Read Status": "currently-reading",
        "Star Rating": "",
    },
    {  # row 5: to-read with a hyphenated ISBN-10
        "Title": "Later",
        "Authors": "B. Writer",
        "ISBN/UID": "0-14-143951-3",
        "Read Status": "to-read",
        "Star Rating": "",
    },
    {  # row 6: a status BookLogr does not know
        "Title": "Paused Book",
        "Authors": "C. Writer",
        "ISBN/UID": "",
        "Read Status": "paused",
        "Star Rating": "",
    },
    {  # row 7: a rating out of range
        "Title": "Too Good",
        "Authors": "D. Writer",
        "ISBN/UID": "",
        "Read Status": "read",
        "Star Rating": "6",
    },
    {  # row 8: no title
        "Title": "",
        "Authors": "E. Writer",
        "ISBN/UID": "",
        "Read Status": "read",
        "Star Rating": "",
    },
]


def test_storygraph_maps_every_column(settings: Settings, conn: Any) -> None:
    text = csv_text(STORYGRAPH_HEADER, STORYGRAPH_ROWS)
    report = run_import(settings, conn, "storygraph_import", text)

    assert report["status"] == "success", report["error"]
    result = report["result"]
    assert result["imported"] == 5 and result["book_notes"] == 1
    assert result["skipped_invalid"] == [
        {"row": 7, "reason": "Star Rating '6' is not a rating from 0 to 5 in steps of 0.01"},
        {"row": 8, "reason": "Title is empty"},
    ]
    assert result["notes"] == [
        "Read Status 'paused' has no BookLogr status: imported as To be read (row 6)"
    ]
    omens, no_isbn, reading, later, paused = books_of(conn, 5)
    assert omens == {
        "title": "Good Omens",
        "isbn": "9780060853983",
        "author": "Terry Pratchett, Neil Gaiman",
        "description": None,
        "reading_status": "Read",
        "current_page": 0,
        "total_pages": 0,
        "rating": Decimal("4.25"),
        "created_on": datetime(2023, 1, 15),
        "notes": [
            {
                "content": "Hilarious.\nWould reread.",
                "quote_page": None,
                "visibility": "hidden",
                "created_on": datetime(2023, 2, 1),
            }
        ],
    }
    assert (no_isbn["isbn"], no_isbn["reading_status"], no_isbn["rating"]) == (
        None,
        "Did not finish",
        Decimal("3.50"),
    )
    assert (reading["reading_status"], reading["rating"]) == ("Currently reading", None)
    assert (later["isbn"], later["reading_status"]) == ("0141439513", "To be read")
    assert paused["reading_status"] == "To be read"


# --- duplicates --------------------------------------------------------------------------------


def _dupe_file() -> str:
    rows = [
        {"Title": "Already Owned", "Authors": "A", "ISBN/UID": "978-0-06-085398-3",
         "Read Status": "read", "Star Rating": ""},
        {"Title": "New", "Authors": "B", "ISBN/UID": "9780441172719",
         "Read Status": "read", "Star Rating": ""},
        {"Title": "New Again", "Authors": "B", "ISBN/UID": "9780441172719",
         "Read Status": "to-read", "Star Rating": ""},
        {"Title": "No ISBN", "Authors": "C", "ISBN/UID": "",
         "Read Status": "read", "Star Rating": ""},
        {"Title": "No ISBN", "Authors": "C", "ISBN/UID": "",
         "Read Status": "read", "Star Rating": ""},
    ]  # fmt: skip
    return csv_text(STORYGRAPH_HEADER, rows)


def _own_one(conn: Any) -> None:
    conn.execute(
        "INSERT INTO books (title, isbn, owner_id) VALUES ('Mine', '9780060853983', 5), "
        "('Someone else''s', '9780441172719', 6)"
    )


def test_duplicates_are_skipped_by_default(settings: Settings, conn: Any) -> None:
    _own_one(conn)
    report = run_import(settings, conn, "storygraph_import", _dupe_file())
    assert report["status"] == "success", report["error"]
    assert report["result"]["imported"] == 2
    assert report["result"]["skipped_duplicates"] == 3
    assert report["result"]["duplicate_rows"] == [
        {"row": 2, "reason": "already in your library (the same ISBN)"},
        {"row": 4, "reason": "the same ISBN as row 3"},
        {"row": 6, "reason": "the same title and author as row 5"},
    ]
    titles = [b["title"] for b in books_of(conn, 5)]
    assert titles == ["Mine", "New", "No ISBN"]


def test_duplicates_are_imported_when_allowed(settings: Settings, conn: Any) -> None:
    _own_one(conn)
    report = run_import(settings, conn, "storygraph_import", _dupe_file(), allow=True)
    assert report["status"] == "success", report["error"]
    assert report["result"]["imported"] == 5 and report["result"]["skipped_duplicates"] == 0
    assert report["result"]["duplicate_rows"] == []
    assert len(books_of(conn, 5)) == 6


def test_importing_the_same_file_twice_adds_nothing_the_second_time(
    settings: Settings, conn: Any
) -> None:
    text = csv_text(GOODREADS_HEADER, GOODREADS_ROWS[:2])
    assert run_import(settings, conn, "goodreads_import", text)["result"]["imported"] == 2
    second = run_import(settings, conn, "goodreads_import", text)
    assert second["result"]["imported"] == 0 and second["result"]["skipped_duplicates"] == 2
    assert count_books(conn) == 2


# --- broken files ------------------------------------------------------------------------------


def test_broken_files_fail_and_import_nothing(settings: Settings, conn: Any) -> None:
    good = csv_text(GOODREADS_HEADER, GOODREADS_ROWS)
    cases = {
        "goodreads_import": {
            "just some words\nnot a csv at all": "required columns missing: Title, Author",
            good.replace("Exclusive Shelf", "Shelf"): "required column missing: Exclusive Shelf",
            good.replace("Dune", "D\ufffdne"): "not valid UTF-8 (line 3)",
            good.replace("Dune", "D\x00ne"): "contains NUL characters (line 3)",
            "\ufeff\r\n": "the file is empty",
            csv_text(GOODREADS_HEADER, [GOODREADS_ROWS[4]]): "none of the 1 rows",
        },
        "storygraph_import": {
            csv_text(GOODREADS_HEADER, GOODREADS_ROWS): "not a StoryGraph export",
        },
        "booklogr_csv_import": {
            "title,isbn\nA,1\n": "required columns missing: description, reading_status",
        },
    }
    for task_type, files in cases.items():
        for text, expected in files.items():
            report = run_import(settings, conn, task_type, text)
            assert report["status"] == "failure", (task_type, text)
            assert expected in report["error"], report["error"]
            assert count_books(conn) == 0 and count_notes(conn) == 0


def test_a_failure_while_loading_rolls_everything_back(settings: Settings, conn: Any) -> None:
    conn.execute("ALTER TABLE notes ADD CONSTRAINT short_notes CHECK (length(content) < 10)")
    report = run_import(
        settings, conn, "goodreads_import", csv_text(GOODREADS_HEADER, GOODREADS_ROWS)
    )
    assert report["status"] == "failure" and "internal error" in report["error"]
    assert "short_notes" not in report["error"]  # SQL details go to the log only (issue 14)
    assert count_books(conn) == 0 and count_notes(conn) == 0


# --- BookLogr CSV round trip -------------------------------------------------------------------


def test_csv_export_then_import_reproduces_the_books(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=5)
    conn.execute(
        "UPDATE notes SET visibility = 'public', quote_page = NULL, "
        "created_on = '2020-02-03 04:05:06.789' WHERE id % 2 = 0"
    )
    conn.execute(
        "INSERT INTO notes (book_id, content, visibility) SELECT min(id), "
        "'=formula-looking note, \"quoted\"', NULL FROM books WHERE owner_id = 5"
    )
    export_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    assert Runner(settings, "w").run_by_id(export_id) == "success"
    row = conn.execute("SELECT filename FROM csv_export WHERE task_id = %s", (export_id,))
    with open(export_folder / row.fetchone()["filename"], encoding="utf-8", newline="") as f:
        text = f.read()  # exactly as written: a CR inside a cell stays a CR

    report = run_import(settings, conn, "booklogr_csv_import", text, owner=6)

    assert report["status"] == "success", report["error"]
    assert report["result"]["skipped_invalid"] == []
    original, imported = books_of(conn, 5), books_of(conn, 6)
    for book in original + imported:
        book.pop("created_on")  # the CSV has no column for it
    assert imported == original
    assert report["result"]["imported"] == len(original)
    assert report["result"]["book_notes"] == sum(len(b["notes"]) for b in original)


def test_booklogr_csv_rows_that_cannot_be_read_are_reported(settings: Settings, conn: Any) -> None:
    header = "title,isbn,description,reading_status,current_page,total_pages,author,rating,notes"
    lines = [
        header,
        "Good,1,,Read,1,2,A,4.5,[]",
        "Bad status,,,Reading,,,,,[]",
        "Bad notes,,,,,,,,{oops",
        'Bad note,,,,,,,,"[{""quote_page"": 1}]"',
        "Bad page,,,,-1,,,,[]",
        "Bad rating,,,,,,,4.125,[]",
        "Short row,1",
        ",,,,,,,,",
        "Extra cells are fine when empty,,,,,,,,[],,",
    ]
    report = run_import(settings, conn, "booklogr_csv_import", "\r\n".join(lines) + "\r\n")
    assert report["status"] == "success", report["error"]
    assert report["result"]["skipped_invalid"] == [
        {"row": 3, "reason": "reading_status 'Reading' is not one of Read, Currently reading, "
                             "To be read, Did not finish"},
        {"row": 4, "reason": "notes is not a JSON array"},
        {"row": 5, "reason": "note 1 has no text content"},
        {"row": 6, "reason": "current_page '-1' is not a whole number from 0 to 2147483647"},
        {"row": 7, "reason": "rating '4.125' is not a rating from 0 to 5 in steps of 0.01"},
        {"row": 8, "reason": "the row has 2 cells where the header has 9"},
        {"row": 9, "reason": "the row is empty"},
    ]  # fmt: skip
    assert [b["title"] for b in books_of(conn, 5)] == ["Good", "Extra cells are fine when empty"]


# --- any file, through the runner --------------------------------------------------------------

FORMATS = {
    "booklogr_csv_import": [
        "title", "isbn", "description", "reading_status", "current_page", "total_pages",
        "author", "rating", "notes",
    ],
    "goodreads_import": GOODREADS_HEADER,
    "storygraph_import": STORYGRAPH_HEADER,
}  # fmt: skip
CELLS = st.one_of(
    st.sampled_from(
        ["", "0", "5", "4.25", "-1", "read", "to-read", "Read", "dnf", '="9780547928227"',
         "9780547928227", "2021/03/04", "2021/13/45", "[]", '[{"content": "n"}]', "a<br/>b"]
    ),
    st.text(max_size=12),
)  # fmt: skip


@st.composite
def import_files(draw: st.DrawFn) -> tuple[str, str]:
    task_type = draw(st.sampled_from(sorted(FORMATS)))
    header = FORMATS[task_type]
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=6))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    tail = draw(st.one_of(st.just(""), st.text(max_size=20)))
    return task_type, out.getvalue() + tail


@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=import_files())
def test_any_file_ends_in_success_or_a_failure_with_a_message(
    settings: Settings, conn: Any, case: tuple[str, str]
) -> None:
    task_type, text = case
    before = count_books(conn)
    report = run_import(settings, conn, task_type, text, owner=7, allow=True)
    after = count_books(conn)
    event(f"{task_type}: {report['status']}")
    if report["status"] == "success":
        assert after - before == report["result"]["imported"]
    else:
        assert report["status"] == "failure", report
        assert report["error"] and "internal error" not in report["error"], report["error"]
        assert after == before
