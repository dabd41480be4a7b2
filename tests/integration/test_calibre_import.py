"""calibre's CSV catalog, shaped like calibre writes it: a BOM, an unquoted header of the chosen
fields followed by the user's #custom columns, every value double-quoted."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any

from booklogr_tasks.core.settings import Settings

from tests.integration.test_imports import books_of, run_import

ALL_FIELDS = [
    "author_sort", "authors", "comments", "cover", "formats", "id", "identifiers", "isbn",
    "languages", "library_name", "pubdate", "publisher", "rating", "series", "series_index",
    "size", "tags", "timestamp", "title", "title_sort", "uuid",
]  # fmt: skip
CUSTOM = ["#date_read", "#pages", "#read", "#status"]
UNDEFINED = "0101-01-01T00:00:00+00:00"


def calibre_csv(header: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    out.write("\ufeff" + ",".join(header) + "\r\n")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return out.getvalue()


def book(title: str, **cells: str) -> dict[str, str]:
    """A row with what calibre always fills in (ids, library, dates), plus these cells."""
    return {
        "author_sort": "Author, Some", "authors": "Some Author", "cover": "/lib/cover.jpg",
        "formats": "/lib/book.epub", "id": "1", "languages": "eng", "library_name": "Calibre",
        "pubdate": UNDEFINED, "series_index": "1.0", "size": "123456",
        "timestamp": "2019-06-01T10:00:00+00:00", "title": title, "title_sort": title,
        "uuid": "5b0f7a7e-2c53-4f0e-9d2e-1b8f7c1d3a10", **cells,
    }  # fmt: skip


ROWS = [
    book(  # row 2: #read True, rating, ISBN, HTML comments, pages, read date
        "The Hobbit",
        authors="J. R. R. Tolkien",
        comments="<div><p>A hobbit&#39;s tale.</p><p>There &amp; back<br/>again.</p></div>",
        identifiers="goodreads:5907,isbn:9780547928227",
        isbn="9780547928227",
        rating="4.5",
        tags="Fantasy, Classics",
        **{"#date_read": "2021-03-04T00:00:00+00:00", "#pages": "310", "#read": "True"},
    ),
    book(  # row 3: two authors, ISBN-10 only in identifiers, text status, undefined read date
        "Good Omens",
        authors="Terry Pratchett & Neil Gaiman",
        identifiers="amazon:B0000,isbn:0060853980",
        **{"#status": "Reading", "#date_read": UNDEFINED, "#read": "False"},
    ),
    book("Later", tags="Science Fiction, to-read", **{"#read": "False"}),  # row 4: tag
    book("Given Up", tags="dnf", rating="1"),  # row 5
    book("Paused", **{"#status": "Paused"}),  # row 6: a status BookLogr has not
    book("", authors="Nobody"),  # row 7: no title
    book("Too Good", rating="6"),  # row 8
    book("Odd ISBN", isbn="12345"),  # row 9: not an ISBN, left out with a note
]


def test_calibre_catalog_maps_every_recognisable_column(settings: Settings, conn: Any) -> None:
    report = run_import(settings, conn, "calibre_import", calibre_csv(ALL_FIELDS + CUSTOM, ROWS))

    assert report["status"] == "success", report["error"]
    result = report["result"]
    assert (result["rows"], result["imported"], result["book_notes"]) == (8, 6, 1)
    assert result["reading_sessions"] == 1
    assert result["skipped_invalid"] == [
        {"row": 7, "reason": "title is empty"},
        {"row": 8, "reason": "rating '6' is not a rating from 0 to 5 in steps of 0.01"},
    ]
    assert result["notes"] == [
        "#status 'Paused' has no BookLogr status: imported as To be read (row 6)",
        "ISBN '12345' is not an ISBN: left out (row 9)",
    ]
    hobbit, omens, later, given_up, paused, odd = books_of(conn, 5)
    assert hobbit == {
        "title": "The Hobbit",
        "isbn": "9780547928227",
        "author": "J. R. R. Tolkien",
        "description": None,
        "reading_status": "Read",
        "current_page": 310,
        "total_pages": 310,
        "rating": Decimal("4.50"),
        "created_on": datetime(2019, 6, 1, 10, 0),
        "notes": [
            {
                "content": "A hobbit's tale.\nThere & back\nagain.",
                "quote_page": None,
                "visibility": "hidden",
                "created_on": hobbit["notes"][0]["created_on"],
            }
        ],
    }
    assert (omens["author"], omens["isbn"], omens["reading_status"]) == (
        "Terry Pratchett, Neil Gaiman",
        "0060853980",
        "Currently reading",
    )
    assert (omens["rating"], omens["total_pages"], omens["current_page"]) == (None, 0, 0)
    assert later["reading_status"] == "To be read"
    assert (given_up["reading_status"], given_up["rating"]) == ("Did not finish", Decimal("1.00"))
    assert paused["reading_status"] == "To be read"
    assert odd["isbn"] is None
    sessions = conn.execute(
        "SELECT b.title, s.status, s.start_date, s.end_date FROM reading_sessions s "
        "JOIN books b ON b.id = s.book_id"
    ).fetchall()
    assert sessions == [
        {
            "title": "The Hobbit",
            "status": "Read",
            "start_date": datetime(2021, 3, 4),
            "end_date": datetime(2021, 3, 4),
        }
    ]


def test_calibre_catalog_with_few_fields_and_other_custom_columns(
    settings: Settings, conn: Any
) -> None:
    """An older calibre (authors joined by ", "), a subset of fields in another order, custom
    columns under other names, and columns nobody knows."""
    header = ["title", "authors", "tags", "#page_count", "#read_status", "#finished",
              "#date_started", "#myrating", "#shelf_notes", "#genre"]  # fmt: skip
    rows = [
        {"title": "Dune", "authors": "Frank Herbert, Brian Herbert", "#page_count": "412.0",
         "#read_status": "Finished", "#finished": "2022-02-20T00:00:00+00:00",
         "#date_started": "2022-02-01T00:00:00+00:00", "#myrating": "4", "#genre": "SF"},
        {"title": "Emma", "authors": "Jane Austen", "tags": "read"},
        {"title": "Unsorted", "authors": "Anonymous"},
    ]  # fmt: skip
    report = run_import(settings, conn, "calibre_import", calibre_csv(header, rows))

    assert report["status"] == "success", report["error"]
    assert report["result"]["skipped_invalid"] == [] and report["result"]["notes"] == []
    dune, emma, unsorted = books_of(conn, 5)
    assert (dune["author"], dune["total_pages"], dune["current_page"]) == (
        "Frank Herbert, Brian Herbert",
        412,
        412,
    )
    assert (dune["reading_status"], dune["rating"]) == ("Read", Decimal("4.00"))
    assert emma["reading_status"] == "Read"
    assert unsorted["reading_status"] == "To be read" and unsorted["created_on"] is not None
    session = conn.execute("SELECT status, start_date, end_date FROM reading_sessions").fetchall()
    assert session == [
        {
            "status": "Read",
            "start_date": datetime(2022, 2, 1),
            "end_date": datetime(2022, 2, 20),
        }
    ]


def test_a_file_that_is_not_a_calibre_catalog_fails(settings: Settings, conn: Any) -> None:
    report = run_import(settings, conn, "calibre_import", "Title,Author\r\nDune,Frank Herbert\r\n")
    assert report["status"] == "failure"
    assert report["error"] == (
        "this is not a calibre CSV catalog: required column missing: authors"
    )
