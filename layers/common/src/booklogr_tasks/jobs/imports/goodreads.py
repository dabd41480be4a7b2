"""goodreads_import: Goodreads' "Export Library" CSV.

Mapped: Title; Author (+ Additional Authors); ISBN13, else ISBN (both written as ="…");
My Rating (0 = not rated); Number of Pages; Exclusive Shelf → reading status as BookLogr maps it;
Date Added → when the book was added; My Review and Private Notes → notes on the book, dated
Date Read when there is one; Date Read → a finished reading session ending that day. Columns
BookLogr has no place for (publisher, shelves, …) are left out.
"""

from __future__ import annotations

import re

from booklogr_tasks.core.errors import RowInvalid
from booklogr_tasks.jobs.books import unneutralise
from booklogr_tasks.jobs.imports.base import (
    BookIn,
    ImportFormat,
    NoteIn,
    Record,
    Remarks,
    day,
    isbn_or_none,
    paragraphs,
    rating,
    started_or_finished,
    whole_number,
)
from booklogr_tasks.jobs.imports.loading import register_import

SHELVES = {
    "read": "Read",
    "currently-reading": "Currently reading",
    "to-read": "To be read",
}
# Custom exclusive shelves people commonly keep for books they gave up on.
DID_NOT_FINISH_SHELVES = frozenset({"did-not-finish", "dnf", "abandoned"})

REQUIRED = ("Title", "Author", "ISBN", "ISBN13", "My Rating", "Exclusive Shelf")
_FORMULA = re.compile(r'\s*="(.*)"\s*')


def formula_text(cell: str) -> str:
    """Goodreads writes ISBNs as spreadsheet formulas: ="0547928220"; an absent one is ="" ."""
    match = _FORMULA.fullmatch(cell)
    return match[1] if match else cell


def isbn(record: Record) -> str | None:
    for column in ("ISBN13", "ISBN"):
        value = formula_text(record.get(column)).strip()
        if not value:
            continue
        found = isbn_or_none(value)
        if found is None:
            raise RowInvalid(f"{column} {value!r} is not an ISBN")
        return found
    return None


def reading_status(record: Record, remarks: Remarks) -> str:
    shelf = record.get("Exclusive Shelf").strip()
    key = shelf.casefold()
    if key in SHELVES:
        return SHELVES[key]
    if key in DID_NOT_FINISH_SHELVES:
        return "Did not finish"
    if not shelf:
        remarks.add("Exclusive Shelf was empty: imported as To be read", record.row)
    else:
        remarks.add(
            f"Exclusive Shelf {shelf!r} has no BookLogr status: imported as To be read",
            record.row,
        )
    return "To be read"


def author(record: Record) -> str | None:
    first = unneutralise(record.get("Author").strip())
    more = record.get("Additional Authors")
    if not more or more.isspace():  # the common case: one author
        return first or None
    names = [first] + [n.strip() for n in more.split(",")]
    return ", ".join(n for n in names if n) or None


def convert(record: Record, remarks: Remarks) -> BookIn:
    # Title and Author lose the apostrophe goodreads_export puts before a formula-looking value.
    title = unneutralise(record.get("Title").strip())
    if not title:
        raise RowInvalid("Title is empty")
    pages = whole_number(record.get("Number of Pages"), "Number of Pages")
    status = reading_status(record, remarks)
    read_on = day(record.get("Date Read"), "Date Read")
    notes = [
        NoteIn(content=text, created_on=read_on)
        for text in (paragraphs(record.get("My Review")), record.get("Private Notes").strip())
        if text
    ]
    return BookIn(
        row=record.row,
        title=title,
        isbn=isbn(record),
        author=author(record),
        reading_status=status,
        current_page=started_or_finished(status, pages),
        total_pages=pages if pages is not None else 0,
        rating=rating(record.get("My Rating"), "My Rating", zero_is_unrated=True),
        created_on=day(record.get("Date Added"), "Date Added"),
        notes=notes,
        read_on=read_on,
    )


FORMAT = ImportFormat(name="Goodreads library export", required=REQUIRED, convert=convert)


SPEC = register_import(
    "goodreads_import",
    FORMAT,
    "Import Goodreads' library export (shelves, ratings, reviews and private notes).",
)
