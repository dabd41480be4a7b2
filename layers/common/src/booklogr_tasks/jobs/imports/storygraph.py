"""storygraph_import: The StoryGraph's export CSV.

Mapped: Title; Authors (kept as the comma-separated list); ISBN/UID when it holds an ISBN (The
StoryGraph's own UUIDs are not ISBNs and are left out); Read Status → reading status; Star Rating
(quarter steps); Date Added → when the book was added; Review → a note on the book, dated Last
Date Read when there is one; Last Date Read (and its start in Dates Read) → a finished reading
session. Moods, pace, tags and the other columns have no place in BookLogr.
"""

from __future__ import annotations

import re
from datetime import datetime

from booklogr_tasks.core.errors import RowInvalid
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
    text_or_none,
)
from booklogr_tasks.jobs.imports.loading import register_import

STATUSES = {
    "read": "Read",
    "currently-reading": "Currently reading",
    "to-read": "To be read",
    "did-not-finish": "Did not finish",
}

REQUIRED = ("Title", "Authors", "ISBN/UID", "Read Status", "Star Rating")


def reading_status(record: Record, remarks: Remarks) -> str:
    value = record.get("Read Status").strip()
    if value.casefold() in STATUSES:
        return STATUSES[value.casefold()]
    if value:
        remarks.add(
            f"Read Status {value!r} has no BookLogr status: imported as To be read", record.row
        )
    else:
        remarks.add("Read Status was empty: imported as To be read", record.row)
    return "To be read"


_UUID = re.compile(r"[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}", re.IGNORECASE)


def isbn(record: Record, remarks: Remarks) -> str | None:
    """ISBN/UID holds an ISBN, or The StoryGraph's own UUID for editions without one."""
    value = record.get("ISBN/UID").strip()
    found = isbn_or_none(value)
    if found is None and value and not _UUID.fullmatch(value):
        remarks.add(
            f"ISBN/UID {value!r} is neither an ISBN nor a StoryGraph id: left out", record.row
        )
    return found


_READ_RANGE = re.compile(
    r"([0-9]{4}/[0-9]{1,2}/[0-9]{1,2})?\s*-\s*([0-9]{4}/[0-9]{1,2}/[0-9]{1,2})"
)


def last_read(record: Record) -> tuple[datetime | None, datetime | None]:
    """When the book was last read, as (start, end): Last Date Read is the end; Dates Read
    ("2023/01/20-2023/02/01, …") gives the start of the read that ended then (or of the last
    read, when Last Date Read is empty)."""
    end = day(record.get("Last Date Read"), "Last Date Read")
    ranges = _READ_RANGE.findall(record.get("Dates Read"))
    for start_text, end_text in reversed(ranges):
        range_end = day(end_text, "Dates Read")
        if range_end is not None and (end is None or range_end == end):
            start = day(start_text, "Dates Read") if start_text else None
            return (start if start is None or start <= range_end else None), range_end
    return None, end


def convert(record: Record, remarks: Remarks) -> BookIn:
    title = record.get("Title").strip()
    if not title:
        raise RowInvalid("Title is empty")
    review = paragraphs(record.get("Review"))
    read_from, read_on = last_read(record)
    return BookIn(
        row=record.row,
        title=title,
        isbn=isbn(record, remarks),
        author=text_or_none(record.get("Authors")),
        reading_status=reading_status(record, remarks),
        rating=rating(record.get("Star Rating"), "Star Rating", zero_is_unrated=True),
        created_on=day(record.get("Date Added"), "Date Added"),
        notes=[NoteIn(content=review, created_on=read_on)] if review else [],
        read_from=read_from,
        read_on=read_on,
    )


FORMAT = ImportFormat(name="StoryGraph export", required=REQUIRED, convert=convert)


SPEC = register_import(
    "storygraph_import",
    FORMAT,
    "Import The StoryGraph's export (read status, star ratings, reviews).",
)
