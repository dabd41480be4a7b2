"""What every import shares: read the CSV as a stream and turn its rows into books, one row at
a time (loading.py writes them). Rows are numbered like a spreadsheet shows them: the header is
row 1.
"""

from __future__ import annotations

import csv
import gc
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, BinaryIO, NoReturn

from booklogr_tasks.core.errors import FileUnusable, RowInvalid

READING_STATUSES = ("Read", "Currently reading", "To be read", "Did not finish")
PROGRESS_EVERY_ROWS = 1000
_MAX_INT = 2**31 - 1
_MAX_ROWS_LISTED = 20

# What one row of a file may hold. An import holds one row at a time, so these bound its memory
# whatever the file's shape (one row of millions of cells, a header of millions of names), and
# are far past what a library export writes: a row of Goodreads' has 24 to 31 cells, calibre's
# some 20 plus its custom columns, and the longest review or description is some 100 KB.
MAX_CELL_CHARS = 512 * 1024
MAX_ROW_CHARS = 1024 * 1024
MAX_COLUMNS = 500
MAX_HEADER_CHARS = 64 * 1024

# The csv module refuses cells past its limit while it reads them (its default is 128 KiB).
csv.field_size_limit(MAX_CELL_CHARS)


@dataclass(slots=True)
class NoteIn:
    content: str
    quote_page: int | None = None
    visibility: str | None = "hidden"
    created_on: datetime | None = None


@dataclass(slots=True)
class BookIn:
    row: int
    title: str
    isbn: str | None = None
    author: str | None = None
    description: str | None = None
    reading_status: str | None = "To be read"
    current_page: int | None = 0
    total_pages: int | None = 0
    rating: Decimal | None = None
    created_on: datetime | None = None
    notes: list[NoteIn] = field(default_factory=list)
    # When the book was last read, if the file says: a finished reading session.
    read_from: datetime | None = None
    read_on: datetime | None = None


@dataclass(slots=True)
class Record:
    """One data row of the file, read by column name."""

    row: int
    cells: list[str]
    # Casefolded column name → index of its first occurrence; one dict shared by every row.
    columns: dict[str, int]
    problem: str | None = None  # why the row cannot be read at all

    def get(self, column: str) -> str:
        index = self.columns.get(column)
        if index is None:
            index = self.columns.get(column.casefold())
        return "" if index is None else self.cells[index]


# What a task reports about a file is bounded however many rows it has (the contract's 64 KB
# for result + error): messages are cut to this length, at most this many kinds are told apart,
# and this many skipped rows are given as examples.
_MAX_MESSAGE_CHARS = 300
_MAX_KINDS = 50
EXAMPLE_ROWS = 20
# The values in a reason ('five', "x", row numbers): without them, reasons of one kind are one.
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|[0-9]+")


def short(message: str) -> str:
    """A message as reported: values from the file can make it any length."""
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[:_MAX_MESSAGE_CHARS] + "…"


def reason_kind(reason: str) -> str:
    """My Rating 'five' is not a number → My Rating … is not a number."""
    return _VALUES.sub("…", reason)


class Remarks:
    """What an import had to map lossily, said once per kind with the rows it concerns."""

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._counts: dict[str, int] = {}
        self._more = 0

    def add(self, message: str, row: int) -> None:
        message = short(message)
        rows = self._rows.get(message)
        if rows is None:
            if len(self._rows) >= _MAX_KINDS:
                self._more += 1
                return
            rows = self._rows[message] = []
        self._counts[message] = self._counts.get(message, 0) + 1
        if len(rows) < _MAX_ROWS_LISTED:
            rows.append(row)

    def messages(self) -> list[str]:
        out = []
        for message, rows in self._rows.items():
            count = self._counts[message]
            listed = ", ".join(str(r) for r in rows)
            more = f" and {count - len(rows)} more" if count > len(rows) else ""
            out.append(f"{message} (row{'s' if count > 1 else ''} {listed}{more})")
        if self._more:
            out.append(f"{self._more} more remarks of other kinds")
        return out


class Skipped:
    """Rows an import skipped, summarised: how many, how many per kind of reason, and the
    first EXAMPLE_ROWS as examples, so a file of 200,000 duplicates reports in a few KB."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[dict[str, Any]] = []
        self.kinds: dict[str, int] = {}

    def add(self, row: int, reason: str) -> None:
        self.count += 1
        reason = short(reason)
        if len(self.examples) < EXAMPLE_ROWS:
            self.examples.append({"row": row, "reason": reason})
        kind = reason_kind(reason)
        if kind not in self.kinds and len(self.kinds) >= _MAX_KINDS:
            kind = "other reasons"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


# Turns one record into a book; raises RowInvalid for a row it cannot read.
Converter = Callable[[Record, Remarks], BookIn]


@dataclass(frozen=True)
class ImportFormat:
    name: str  # as the user knows the file, e.g. "Goodreads library export"
    required: tuple[str, ...]
    convert: Converter


@dataclass
class Parsed:
    books: list[BookIn]
    rows: int
    invalid: list[dict[str, Any]]
    remarks: list[str]


Progress = Callable[[int, int | None], None]


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector while a file becomes objects.

    Parsing makes hundreds of thousands of small acyclic objects, and each few hundred
    allocations trigger a collection that walks the ones made so far: more than half of the
    time of a 100k-row parse. Nothing made here forms a cycle, so nothing waits on the pause.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse(source: str | BinaryIO, fmt: ImportFormat, progress: Progress | None = None) -> Parsed:
    """Every book of the file, or JobError when the file is not what `fmt` describes."""
    reading = Reading(fmt)
    with no_cyclic_gc():
        books = list(books_of(as_stream(source), reading, progress))
    return Parsed(books, reading.rows, reading.invalid.examples, reading.remarks.messages())


def as_stream(source: str | BinaryIO) -> BinaryIO:
    """The file as bytes to read. Text that is not UTF-8 (lone surrogates) stays detectably
    broken: it decodes to replacement characters, which the reader reports by line."""
    if isinstance(source, str):
        return io.BytesIO(source.encode("utf-8", "surrogatepass"))
    return source


@dataclass
class Reading:
    """What reading one file found besides its books."""

    fmt: ImportFormat
    rows: int = 0
    books: int = 0
    invalid: Skipped = field(default_factory=Skipped)
    remarks: Remarks = field(default_factory=Remarks)

    def invalid_summary(self) -> dict[str, Any]:
        return {
            "skipped_invalid": self.invalid.examples,
            "invalid_rows": self.invalid.count,
            "invalid_reasons": self.invalid.kinds,
        }

    def check_any_read(self) -> None:
        """JobError for a file without a book: no data rows, or none readable."""
        if self.rows == 0:
            raise FileUnusable(
                f"the file has a header but no rows: there is nothing to import in this "
                f"{self.fmt.name}"
            )
        if self.books == 0:
            raise FileUnusable(
                f"none of the {self.rows} rows of this {self.fmt.name} could be read",
                {"imported": 0, "rows": self.rows, **self.invalid_summary()},
            )


def books_of(
    source: BinaryIO, reading: Reading, progress: Progress | None = None
) -> Iterator[BookIn]:
    """The file's books, converted as they are read (only the current row is in memory).
    Rows that cannot be read go to `reading.invalid`; at the end, JobError if no row was a book.
    """
    size = size_of(source)
    for record in read_records(source, reading.fmt):
        reading.rows += 1
        if progress is not None and reading.rows % PROGRESS_EVERY_ROWS == 0:
            progress(reading.rows, _estimate(reading.rows, source, size))
        try:
            if record.problem is not None:
                raise RowInvalid(record.problem)
            book = reading.fmt.convert(record, reading.remarks)
        except RowInvalid as exc:
            reading.invalid.add(record.row, str(exc))
            continue
        reading.books += 1
        yield book
    reading.check_any_read()


def size_of(source: BinaryIO) -> int | None:
    if not source.seekable():
        return None
    here = source.tell()
    size = source.seek(0, io.SEEK_END)
    source.seek(here)
    return size


def _estimate(rows: int, source: BinaryIO, size: int | None) -> int | None:
    """Rows in the whole file, from the share of its bytes read so far (None if unknown)."""
    if size is None:
        return None
    read = source.tell()
    return max(rows, round(rows * size / read)) if read else None


def read_records(source: str | BinaryIO, fmt: ImportFormat) -> Iterator[Record]:
    """The data rows, one at a time; JobError (at the first row or where the CSV breaks) when
    the file is not a readable `fmt` or a row is past the limits (MAX_*)."""
    # utf-8-sig drops the BOM that Excel, Goodreads and calibre write; newline="" leaves line
    # breaks inside quoted cells to the csv module.
    text = io.TextIOWrapper(as_stream(source), encoding="utf-8-sig", errors="replace", newline="")
    lines = Lines(text)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise FileUnusable(f"the file is empty: expected a {fmt.name} with a header row")
        _check_width(header, 1)
        columns = [cell.strip() for cell in header]
        folded = {c.casefold() for c in columns}
        missing = [c for c in fmt.required if c.casefold() not in folded]
        if missing:
            raise FileUnusable(
                f"this is not a {fmt.name}: required column{'s' if len(missing) > 1 else ''} "
                f"missing: {', '.join(missing)}"
            )
        yield from _records(reader, columns, lines)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise FileUnusable(
                f"row {lines.row} has a cell longer than {MAX_CELL_CHARS:,} characters, the "
                "most an import reads in one cell; nothing was imported"
            ) from None
        raise FileUnusable(f"the file is not readable CSV (row {reader.line_num}): {exc}") from exc
    finally:
        text.detach()  # the caller owns (and closes) the byte stream


class Lines:
    """The file's lines for the csv reader, checked as they are read: UTF-8 without NUL (what
    PostgreSQL can store; bytes that were not UTF-8 reach us as U+FFFD), no row (which may span
    lines) longer than MAX_ROW_CHARS (MAX_HEADER_CHARS for the header), and none of more than
    MAX_COLUMNS cells. A line is read at most that far, and its cells are counted before the csv
    reader makes them objects, so a row costs about its own length whatever its shape."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self.text = text
        self.line = 0
        self.row = 1  # the row being read, as a spreadsheet numbers it (the header is 1)
        self._row_chars = 0
        self._row_lines: list[str] = []
        self._commas = 0  # in the row so far: at least its cells - 1
        self._cells: _CellCount | None = None  # counted exactly once the commas could be too many

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        limit = MAX_HEADER_CHARS if self.row == 1 else MAX_ROW_CHARS
        line = self.text.readline(limit - self._row_chars + 1)
        if not line:
            raise StopIteration
        self.line += 1
        self._row_chars += len(line)
        if self._row_chars > limit:
            raise FileUnusable(
                f"{self._what()} is longer than {limit:,} characters, the most an import reads "
                "in one row; nothing was imported"
            )
        if "\ufffd" in line or "\x00" in line:
            what = "is not valid UTF-8" if "\ufffd" in line else "contains NUL characters"
            raise FileUnusable(
                f"the file {what} (line {self.line}); save it as UTF-8 text and try again"
            )
        self._count_cells(line)
        return line

    def _count_cells(self, line: str) -> None:
        # Commas in quoted cells are not separators: a row's commas only bound its cells, and
        # the exact count (a scan) is made only for a row whose commas could be too many.
        self._row_lines.append(line)
        self._commas += line.count(",")
        if self._commas < MAX_COLUMNS:
            return
        if self._cells is None:
            self._cells = _CellCount()
            for seen in self._row_lines:
                self._cells.add(seen)
        else:
            self._cells.add(line)
        if self._cells.cells > MAX_COLUMNS:
            too_many_cells(self._what())

    def _what(self) -> str:
        return "the header row" if self.row == 1 else f"row {self.row}"

    def next_row(self) -> None:
        """The csv reader returned a row: what follows is the next one."""
        self.row += 1
        self._row_chars = 0
        self._row_lines.clear()
        self._commas = 0
        self._cells = None


_QUOTE_OR_COMMA = re.compile(r'[",]')


class _CellCount:
    """The cells of a row, as the csv module splits them: commas outside quotes, plus one (a
    doubled quote inside a quoted cell flips the state twice)."""

    def __init__(self) -> None:
        self.cells = 1
        self.quoted = False

    def add(self, line: str) -> None:
        for match in _QUOTE_OR_COMMA.finditer(line):
            if match.group() == '"':
                self.quoted = not self.quoted
            elif not self.quoted:
                self.cells += 1


def too_many_cells(what: str) -> NoReturn:
    raise FileUnusable(
        f"{what} has more than {MAX_COLUMNS} cells, the most an import reads in one row; "
        "nothing was imported"
    )


def _check_width(cells: list[str], row: int) -> None:
    if len(cells) > MAX_COLUMNS:
        too_many_cells("the header row" if row == 1 else f"row {row}")


def _records(reader: Iterator[list[str]], columns: list[str], lines: Lines) -> Iterator[Record]:
    # Names as written and casefolded; a repeated column name counts once, first wins.
    index: dict[str, int] = {}
    for position, name in enumerate(columns):
        index.setdefault(name.casefold(), position)
    for name in columns:
        index.setdefault(name, index[name.casefold()])
    width = len(columns)
    lines.next_row()
    for row, cells in enumerate(reader, start=2):
        lines.next_row()
        if not cells:
            continue  # a blank line holds no row
        _check_width(cells, row)
        if len(cells) < width or (len(cells) > width and any(c.strip() for c in cells[width:])):
            problem = f"the row has {len(cells)} cells where the header has {width}"
            yield Record(row, [], {}, problem)
            continue
        yield Record(row, cells, index)


# --- reading cells ------------------------------------------------------------------------------

_WHOLE = re.compile(r"[0-9]{1,10}")
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]+)?")
_DAY = re.compile(r"([0-9]{4})[/-]([0-9]{1,2})[/-]([0-9]{1,2})")
_ISBN_PUNCTUATION = re.compile(r"[\s-]")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_NOT_ISBN_DIGIT = re.compile(r"[^0-9X]")


def text_or_none(value: str) -> str | None:
    value = value.strip()
    return value or None


def clean(value: str, what: str) -> str:
    """A string from inside the file (e.g. JSON) that PostgreSQL must be able to store."""
    if "\x00" in value:
        raise RowInvalid(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowInvalid(f"{what} is not valid UTF-8 text") from exc
    return value


@lru_cache(maxsize=4096)  # files repeat the same few values; results are immutable
def whole_number(value: str, what: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not _WHOLE.fullmatch(value) or int(value) > _MAX_INT:
        raise RowInvalid(f"{what} {value!r} is not a whole number from 0 to {_MAX_INT}")
    return int(value)


@lru_cache(maxsize=4096)  # files repeat the same few values; results are immutable
def rating(value: str, what: str, zero_is_unrated: bool = False) -> Decimal | None:
    """A rating from 0 to 5 in hundredths (BookLogr's numeric(3,2))."""
    value = value.strip()
    if not value:
        return None
    if not _DECIMAL.fullmatch(value):
        raise RowInvalid(f"{what} {value!r} is not a number")
    number = Decimal(value)
    try:
        exact = number == number.quantize(Decimal("0.01"))
    except InvalidOperation:
        exact = False
    if not exact or number > 5:
        raise RowInvalid(f"{what} {value!r} is not a rating from 0 to 5 in steps of 0.01")
    if zero_is_unrated and number == 0:
        return None
    return number.quantize(Decimal("0.01"))


@lru_cache(maxsize=4096)  # files repeat the same few values; results are immutable
def day(value: str, what: str) -> datetime | None:
    """A date as Goodreads and The StoryGraph write it: 2021/03/04 (or 2021-03-04)."""
    value = value.strip()
    if not value:
        return None
    match = _DAY.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        parsed = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise RowInvalid(f"{what} {value!r} is not a date like 2021/03/04") from None
    return datetime(parsed.year, parsed.month, parsed.day)


def timestamp(value: object, what: str) -> datetime | None:
    """An ISO 8601 timestamp, as naive UTC (how BookLogr stores its timestamps)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowInvalid(f"{what} is not a date and time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowInvalid(f"{what} {value!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


_ISBN = re.compile(r"[0-9]{9}[0-9X]|[0-9]{13}")


def isbn_or_none(value: str) -> str | None:
    """The ISBN in `value` without hyphens or spaces, None when it is not an ISBN."""
    compact = value
    if not (value.isascii() and value.isdigit()):  # most files write bare digits
        compact = _ISBN_PUNCTUATION.sub("", value).upper()
    return compact if _ISBN.fullmatch(compact) else None


def paragraphs(html_text: str) -> str:
    """Review text as plain lines: Goodreads writes line breaks as <br/>."""
    if "<" not in html_text:  # most reviews are empty or have no line break
        return html_text.strip()
    return _BR.sub("\n", html_text).strip()


def started_or_finished(status: str, total_pages: int | None) -> int:
    """BookLogr's current page for a new book: the last page once read, else 0."""
    return total_pages if status == "Read" and total_pages else 0
