"""calibre_import: calibre's CSV catalog (`calibredb catalog library.csv`, or Convert → Create
catalog → CSV).

Columns are read by name, whatever fields and custom columns the user chose; columns with no
place in BookLogr are ignored. Mapped: title; authors (" & " or ", " between names) → author,
as "A, B"; isbn, else the isbn: entry of identifiers; comments (HTML) → a hidden note as text;
rating (stars, 0 = unrated), else a custom rating column such as #myrating; timestamp → when
the book was added. calibre has no page count or reading status of its own, so they come from
custom columns when the file has recognisable ones:

- pages: a custom column whose name contains "page" (#pages, #page_count, …);
- status: a text column such as #status or #read_status (Read, Reading, To read, DNF, …),
  else a yes/no column #read (True → Read), else tags (read, to-read, currently-reading, dnf),
  else "To be read";
- read date: a custom date column such as #date_read, #read_date or #finished, with a start
  date from #date_started / #started when there is one: a finished reading session.

calibre writes an unknown date as the year 101: such dates count as none.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from decimal import Decimal

from booklogr_tasks.core.errors import RowInvalid
from booklogr_tasks.jobs.imports.base import (
    BookIn,
    ImportFormat,
    NoteIn,
    Record,
    Remarks,
    isbn_or_none,
    rating,
    started_or_finished,
    timestamp,
    whole_number,
)
from booklogr_tasks.jobs.imports.loading import register_import

REQUIRED = ("title", "authors")

STATUSES = {
    "Read": ("read", "finished", "done", "completed"),
    "Currently reading": ("reading", "currently reading", "currently-reading", "in progress"),
    "To be read": ("to read", "to-read", "toread", "tbr", "want to read", "unread", "to be read"),
    "Did not finish": ("dnf", "did not finish", "did-not-finish", "abandoned", "gave up"),
}
_STATUS_OF = {value: status for status, values in STATUSES.items() for value in values}
# Tags that say a status; other tags (genres, …) say nothing about reading.
_TAG_STATUS = {
    "read": "Read",
    "currently-reading": "Currently reading",
    "reading": "Currently reading",
    "to-read": "To be read",
    "dnf": "Did not finish",
    "did-not-finish": "Did not finish",
}
_YES = frozenset({"true", "yes", "y", "1"})

_STATUS_COLUMNS = ("#status", "#read_status", "#reading_status", "#readstatus", "#shelf")
_READ_DATE_COLUMNS = ("#date_read", "#read_date", "#dateread", "#readdate", "#finished",
                      "#date_finished", "#finished_date", "#last_read")  # fmt: skip
_START_DATE_COLUMNS = ("#date_started", "#started", "#start_date", "#started_date")
_RATING_COLUMNS = ("#myrating", "#my_rating", "#rating", "#stars")
_NOT_ISBN = re.compile(r"[^0-9Xx]")

_BREAK = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6])\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")


def convert(record: Record, remarks: Remarks) -> BookIn:
    title = record.get("title").strip()
    if not title:
        raise RowInvalid("title is empty")
    status = reading_status(record, remarks)
    pages = page_count(record)
    read_on = date_of(record, _READ_DATE_COLUMNS)
    comments = html_to_text(record.get("comments"))
    return BookIn(
        row=record.row,
        title=title,
        isbn=isbn(record, remarks),
        author=authors(record.get("authors")),
        reading_status=status,
        current_page=started_or_finished(status, pages),
        total_pages=pages if pages is not None else 0,
        rating=stars(record),
        created_on=calibre_date(record.get("timestamp"), "timestamp"),
        notes=[NoteIn(content=comments)] if comments else [],
        read_from=date_of(record, _START_DATE_COLUMNS) if read_on else None,
        read_on=read_on,
    )


def authors(cell: str) -> str | None:
    separator = " & " if "&" in cell else ","
    names = [name.strip() for name in cell.split(separator)]
    return ", ".join(name for name in names if name) or None


def isbn(record: Record, remarks: Remarks) -> str | None:
    value = record.get("isbn").strip()
    if not value:
        for identifier in record.get("identifiers").split(","):
            scheme, _, given = identifier.partition(":")
            if scheme.strip().casefold() == "isbn":
                value = given.strip()
                break
    if not value:
        return None
    found = isbn_or_none(_NOT_ISBN.sub("", value))
    if found is None:
        remarks.add(f"ISBN {value!r} is not an ISBN: left out", record.row)
    return found


def html_to_text(comments: str) -> str:
    """calibre keeps comments as HTML: line breaks and paragraphs become new lines."""
    if "<" not in comments and "&" not in comments:
        return comments.strip()
    text = html.unescape(_TAG.sub("", _BREAK.sub("\n", comments)))
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def stars(record: Record) -> Decimal | None:
    value = record.get("rating")
    what = "rating"
    if not value.strip():
        what = next((c for c in _RATING_COLUMNS if record.get(c).strip()), "rating")
        value = record.get(what)
    return rating(value, what, zero_is_unrated=True)


def page_count(record: Record) -> int | None:
    column = next((c for c in record.columns if c.startswith("#") and "page" in c.casefold()), None)
    if column is None:
        return None
    value = record.get(column).strip()
    # A float column prints whole numbers as 312.0.
    return whole_number(value.removesuffix(".0"), column)


def reading_status(record: Record, remarks: Remarks) -> str:
    for column in _STATUS_COLUMNS:
        value = record.get(column).strip()
        if value:
            status = _STATUS_OF.get(value.casefold())
            if status is not None:
                return status
            remarks.add(
                f"{column} {value!r} has no BookLogr status: imported as To be read", record.row
            )
            return "To be read"
    if record.get("#read").strip().casefold() in _YES:
        return "Read"
    tags = [tag.strip().casefold() for tag in record.get("tags").split(",")]
    for tag in tags:
        if tag in _TAG_STATUS:
            return _TAG_STATUS[tag]
    return "To be read"


def date_of(record: Record, columns: tuple[str, ...]) -> datetime | None:
    for column in columns:
        value = record.get(column)
        if value.strip():
            return calibre_date(value, column)
    return None


def calibre_date(value: str, what: str) -> datetime | None:
    """An ISO 8601 date as calibre writes it; its "undefined" date (the year 101) is none."""
    value = value.strip()
    if not value or value.startswith("0101-"):
        return None
    return timestamp(value, what)


FORMAT = ImportFormat(name="calibre CSV catalog", required=REQUIRED, convert=convert)


SPEC = register_import(
    "calibre_import",
    FORMAT,
    "Import calibre's CSV catalog (authors, ISBN, comments, rating; pages, reading status and "
    "read date from custom columns or tags).",
)
