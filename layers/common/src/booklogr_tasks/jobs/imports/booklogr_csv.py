"""booklogr_csv_import: BookLogr's own CSV (what csv_export writes) back into the library.

It undoes csv_export's formula guard, so export → import reproduces every book and note. A CSV
cell cannot tell an empty text from a missing one: empty cells become NULL, except the title,
which BookLogr always shows and so becomes an empty text.
"""

from __future__ import annotations

import json
from typing import Any

from booklogr_tasks.core.errors import RowInvalid
from booklogr_tasks.jobs.books import CSV_COLUMNS, unneutralise
from booklogr_tasks.jobs.imports.base import (
    READING_STATUSES,
    BookIn,
    ImportFormat,
    NoteIn,
    Record,
    Remarks,
    clean,
    rating,
    text_or_none,
    timestamp,
    whole_number,
)
from booklogr_tasks.jobs.imports.loading import register_import

_STATUSES = {s.casefold(): s for s in READING_STATUSES}


def convert(record: Record, remarks: Remarks) -> BookIn:
    if not any(record.get(c).strip() for c in CSV_COLUMNS):
        raise RowInvalid("the row is empty")
    status = text_or_none(unneutralise(record.get("reading_status")))
    if status is not None:
        if status.casefold() not in _STATUSES:
            raise RowInvalid(
                f"reading_status {status!r} is not one of {', '.join(READING_STATUSES)}"
            )
        status = _STATUSES[status.casefold()]
    return BookIn(
        row=record.row,
        title=unneutralise(record.get("title")),
        isbn=_exact_or_none(record.get("isbn")),
        author=_exact_or_none(record.get("author")),
        description=_exact_or_none(record.get("description")),
        reading_status=status,
        current_page=whole_number(record.get("current_page"), "current_page"),
        total_pages=whole_number(record.get("total_pages"), "total_pages"),
        rating=rating(record.get("rating"), "rating"),
        notes=notes(record.get("notes")),
    )


def _exact_or_none(cell: str) -> str | None:
    return unneutralise(cell) if cell else None


def notes(cell: str) -> list[NoteIn]:
    """The notes column: a JSON array of {content, quote_page, visibility, created_on}."""
    if not cell.strip():
        return []
    try:
        items = json.loads(cell)
    except (ValueError, RecursionError):
        raise RowInvalid("notes is not a JSON array") from None
    if not isinstance(items, list):
        raise RowInvalid("notes is not a JSON array")
    return [_note(item, i) for i, item in enumerate(items, start=1)]


def _note(item: Any, number: int) -> NoteIn:
    what = f"note {number}"
    if not isinstance(item, dict):
        raise RowInvalid(f"{what} is not a JSON object")
    content = item.get("content")
    if not isinstance(content, str):
        raise RowInvalid(f"{what} has no text content")
    page = item.get("quote_page")
    if page is not None and (
        not isinstance(page, int) or isinstance(page, bool) or not 0 <= page < 2**31
    ):
        raise RowInvalid(f"{what} has a quote_page that is not a page number")
    visibility = item.get("visibility", "hidden")
    if visibility is not None and not isinstance(visibility, str):
        raise RowInvalid(f"{what} has a visibility that is not text")
    return NoteIn(
        content=clean(content, f"{what} content"),
        quote_page=page,
        visibility=None if visibility is None else clean(visibility, f"{what} visibility"),
        created_on=timestamp(item.get("created_on"), f"{what} created_on"),
    )


FORMAT = ImportFormat(name="BookLogr CSV", required=CSV_COLUMNS, convert=convert)


SPEC = register_import(
    "booklogr_csv_import",
    FORMAT,
    "Import BookLogr's own CSV (as csv_export writes it), notes included.",
)
