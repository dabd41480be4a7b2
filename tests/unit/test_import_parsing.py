"""The importers' parsing, without a database: any text ends in books or a JobError."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal

import pytest
from booklogr_tasks.core.errors import JobError, RowInvalid
from booklogr_tasks.jobs.imports import base
from booklogr_tasks.jobs.imports import booklogr_csv as booklogr_csv_import
from booklogr_tasks.jobs.imports import calibre as calibre_import
from booklogr_tasks.jobs.imports import goodreads as goodreads_import
from booklogr_tasks.jobs.imports import storygraph as storygraph_import
from booklogr_tasks.jobs.imports.base import (
    ImportFormat,
    Parsed,
    Record,
    day,
    isbn_or_none,
    paragraphs,
    parse,
    rating,
    timestamp,
    whole_number,
)
from hypothesis import given
from hypothesis import strategies as st

FORMATS = [booklogr_csv_import.FORMAT, goodreads_import.FORMAT, storygraph_import.FORMAT]
# Characters that stress CSV parsing and text checks: quotes, line ends, BOM, NUL, lone
# surrogates (bytes that were not UTF-8), replacement characters, formula starts, HTML.
AWKWARD = st.sampled_from(list(",\"'\r\n\t\ufeff\x00\ud800\udfff\ufffd=+-@<br/>[]{}:0123456789.X "))
ANY_TEXT = st.text(alphabet=st.one_of(AWKWARD, st.characters()), max_size=300)


def _parse_or_error(text: str, fmt: ImportFormat) -> Parsed | None:
    try:
        return parse(text, fmt)
    except JobError as exc:
        assert exc.message.strip()
        return None


@given(text=ANY_TEXT, fmt=st.sampled_from(FORMATS))
def test_any_text_parses_or_fails_with_a_message(text: str, fmt: ImportFormat) -> None:
    parsed = _parse_or_error(text, fmt)
    if parsed is not None:
        assert len(parsed.books) + len(parsed.invalid) == parsed.rows


@st.composite
def headed_files(draw: st.DrawFn) -> tuple[ImportFormat, str]:
    """A file with the format's required columns (shuffled, maybe extra) and arbitrary cells."""
    fmt = draw(st.sampled_from(FORMATS))
    header = draw(st.permutations([*fmt.required, "Extra"]))
    cell = st.one_of(ANY_TEXT, st.sampled_from(["", "0", "4.25", "read", '="0547928220"', "[]"]))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(header) + 2), max_size=5))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    writer.writerow(header)
    writer.writerows(rows)
    return fmt, draw(st.sampled_from(["", "\ufeff"])) + out.getvalue()


@given(case=headed_files())
def test_any_rows_parse_or_fail_with_a_message(case: tuple[ImportFormat, str]) -> None:
    fmt, text = case
    parsed = _parse_or_error(text, fmt)
    if parsed is not None:
        assert len(parsed.books) + len(parsed.invalid) == parsed.rows
        assert all(isinstance(r["row"], int) and r["reason"] for r in parsed.invalid)
        for book in parsed.books:
            # Whatever reaches the database is text PostgreSQL can store.
            for value in (book.title, book.isbn, book.author, *(n.content for n in book.notes)):
                if value is not None:
                    value.encode("utf-8")
                    assert "\x00" not in value


def test_progress_is_reported_every_thousand_rows() -> None:
    header = ",".join(storygraph_import.REQUIRED)
    text = header + "\n" + "".join(f"Book {i},A,,read,\n" for i in range(2500))
    seen: list[tuple[int, int]] = []
    parsed = parse(text, storygraph_import.FORMAT, lambda done, total: seen.append((done, total)))
    assert len(parsed.books) == 2500
    # The total is estimated from the share of the file's bytes read so far (the reader reads
    # ahead, so the estimate is low at first); it never claims less than was done.
    assert [done for done, _ in seen] == [1000, 2000]
    assert all(total is not None and done < total <= 2500 for done, total in seen), seen


def test_header_names_match_whatever_their_case_and_spacing() -> None:
    text = " title ,AUTHORS,isbn/uid,Read status,star rating\r\nDune,Frank Herbert,,read,4\r\n"
    parsed = parse(text, storygraph_import.FORMAT)
    assert [(b.title, b.rating) for b in parsed.books] == [("Dune", Decimal("4.00"))]


def test_a_broken_quote_is_reported_as_not_csv() -> None:
    text = 'Title,Authors,ISBN/UID,Read Status,Star Rating\n"Dune"x,A,,read,\n'
    with pytest.raises(JobError, match=r"not readable CSV \(row 2\)"):
        parse(text, storygraph_import.FORMAT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("978-0-547-92822-7", "9780547928227"),
        ("0 14 143951 3", "0141439513"),
        ("080442957x", "080442957X"),
        ("2d5b33a4-1f0b-4e8f-9a43-3c1c2b8e7a10", None),
        ("12345", None),
        ("", None),
        ("9780547928227", "9780547928227"),
        ("٩٧٨٠٥٤٧٩٢٨٢٢٧", None),  # digits, but not ASCII ones
    ],
)
def test_isbn_or_none(value: str, expected: str | None) -> None:
    assert isbn_or_none(value) == expected


def test_ratings() -> None:
    assert rating("4.25", "r") == Decimal("4.25")
    assert rating(" 3 ", "r") == Decimal("3.00")
    assert rating("", "r") is None
    assert rating("0", "r", zero_is_unrated=True) is None
    assert rating("0", "r") == Decimal("0.00")
    for bad in ("4.125", "5.5", "-1", "four", "1e3", "NaN", "٣"):
        with pytest.raises(RowInvalid):
            rating(bad, "r")


def test_numbers_dates_and_text() -> None:
    assert whole_number("300", "n") == 300 and whole_number(" ", "n") is None
    for bad in ("-1", "1_000", "٣", "2147483648", "3.0"):
        with pytest.raises(RowInvalid):
            whole_number(bad, "n")
    assert day("2021/03/04", "d") == datetime(2021, 3, 4) == day("2021-3-4", "d")
    for bad in ("2021/02/30", "04/03/2021", "yesterday"):
        with pytest.raises(RowInvalid):
            day(bad, "d")
    assert timestamp("2020-02-03T04:05:06.789", "t") == datetime(2020, 2, 3, 4, 5, 6, 789000)
    assert timestamp("2020-02-03T04:05:06+02:00", "t") == datetime(2020, 2, 3, 2, 5, 6)
    assert paragraphs("a<br/>b<BR>c<br />d") == "a\nb\nc\nd"
    assert paragraphs("  no markup \n") == "no markup" and paragraphs("") == ""


def test_goodreads_authors_join_the_additional_ones() -> None:
    def authors(first: str, more: str) -> str | None:
        columns = {"Author": 0, "Additional Authors": 1}
        return goodreads_import.author(Record(2, [first, more], columns))

    assert authors(" Frank Herbert ", "") == "Frank Herbert"
    assert authors("Frank Herbert", "  ") == "Frank Herbert"
    assert authors("", "") is None
    assert authors("A", "B, C ,") == "A, B, C"
    assert authors("", " B") == "B"
    assert authors("'=Formula", "") == "=Formula"


def test_goodreads_unwraps_formula_isbns() -> None:
    assert goodreads_import.formula_text('="0547928220"') == "0547928220"
    assert goodreads_import.formula_text('=""') == ""
    assert goodreads_import.formula_text("9780547928227") == "9780547928227"


@pytest.mark.parametrize(
    "fmt",
    [
        booklogr_csv_import.FORMAT,
        goodreads_import.FORMAT,
        storygraph_import.FORMAT,
        calibre_import.FORMAT,
    ],
    ids=lambda f: f.name,
)
def test_every_importer_reads_lf_and_crlf_files_alike(fmt: ImportFormat) -> None:
    """CRLF (RFC 4180, BookLogr's and this service's CSV exports) and LF (many tools) end rows
    alike; a line break inside a quoted cell stays part of the cell."""
    title = next(c for c in fmt.required if c.casefold() == "title")

    def written(terminator: str) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fmt.required, lineterminator=terminator)
        writer.writeheader()
        writer.writerow({**dict.fromkeys(fmt.required, ""), title: "One"})
        writer.writerow({**dict.fromkeys(fmt.required, ""), title: "Two\nlines"})
        return out.getvalue()

    lf, crlf = written("\n"), written("\r\n")
    assert "\r\n" in crlf and "\r" not in lf
    by_lf, by_crlf = parse(lf, fmt), parse(crlf, fmt)
    assert [b.title for b in by_crlf.books] == ["One", "Two\nlines"]
    assert by_crlf.books == by_lf.books and by_crlf.invalid == by_lf.invalid == []


# --- limits: what one row may hold -------------------------------------------------------------

_HEADER = "Title,Authors,ISBN/UID,Read Status,Star Rating\r\n"


def _failure(text: str) -> str:
    with pytest.raises(JobError) as err:
        parse(text, storygraph_import.FORMAT)
    return err.value.message


def test_a_row_past_the_row_limit_fails_naming_the_row_and_the_limit() -> None:
    text = _HEADER + "Fine,A,,read,\r\n" + "x," * (base.MAX_ROW_CHARS // 2) + "\r\n"
    assert _failure(text) == (
        f"row 3 is longer than {base.MAX_ROW_CHARS:,} characters, the most an import reads "
        "in one row; nothing was imported"
    )


def test_a_row_spread_over_many_lines_counts_as_one() -> None:
    # Quoted line breaks keep each line short, and each cell is within its limit; the row as a
    # whole is past the row limit.
    cell = '"' + ("a" * 99 + "\n") * (base.MAX_CELL_CHARS // 200) + '"'
    row = ",".join([cell] * (2 * base.MAX_ROW_CHARS // len(cell) + 1))
    assert _failure(_HEADER + "Fine,A,,read,\r\n" + row + "\r\n").startswith("row 3 is longer")


def test_a_header_past_its_limit_fails_before_it_is_read_whole() -> None:
    text = "Title," + "c," * base.MAX_HEADER_CHARS + "\r\n" + "Fine,A,,read,\r\n"
    assert _failure(text) == (
        f"the header row is longer than {base.MAX_HEADER_CHARS:,} characters, the most an "
        "import reads in one row; nothing was imported"
    )


def test_too_many_cells_fail_naming_the_row_and_the_limit() -> None:
    wide = ",".join(["z"] * (base.MAX_COLUMNS + 1))
    assert _failure(_HEADER + "Fine,A,,read,\r\n" + wide + "\r\n") == (
        f"row 3 has more than {base.MAX_COLUMNS} cells, the most an import reads in one row; "
        "nothing was imported"
    )
    header = "Title,Authors,ISBN/UID,Read Status,Star Rating," + wide + "\r\n"
    assert _failure(header + "Fine,A,,read,\r\n").startswith("the header row has more than")


def test_commas_inside_quoted_cells_are_not_cells() -> None:
    # Far more commas than MAX_COLUMNS, all inside quoted cells (and a doubled quote).
    review = '"' + "well, " * (3 * base.MAX_COLUMNS) + 'said ""so"", then\nmore, and more"'
    parsed = parse(_HEADER + f"{review},A,,read,\r\n", storygraph_import.FORMAT)
    assert parsed.books[0].title.startswith("well, well,") and parsed.invalid == []


def test_a_cell_past_the_cell_limit_fails_naming_the_row_and_the_limit() -> None:
    text = _HEADER + "Fine,A,,read,\r\n" + "Long," + "w" * (base.MAX_CELL_CHARS + 1) + ",,read,\r\n"
    assert _failure(text) == (
        f"row 3 has a cell longer than {base.MAX_CELL_CHARS:,} characters, the most an import "
        "reads in one cell; nothing was imported"
    )


def test_rows_within_the_limits_are_read() -> None:
    long_review = "r" * (base.MAX_CELL_CHARS - 10)
    text = _HEADER + f'"{long_review}",A,,read,\r\n' + "Next,B,,read,\r\n"
    parsed = parse(text, storygraph_import.FORMAT)
    assert [len(b.title) for b in parsed.books] == [len(long_review), 4]
