"""Duplicate keys: ISBN-10 ≡ ISBN-13, and titles/authors compared without case, spacing,
punctuation or series suffix."""

from __future__ import annotations

import pytest
from booklogr_tasks.jobs.imports.duplicates import Seen, isbn13_of, isbn_key, title_key
from hypothesis import given
from hypothesis import strategies as st

ISBN10 = st.from_regex(r"[0-9]{9}[0-9X]", fullmatch=True)
WORDS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü0123456789", min_size=1), min_size=1
)


@pytest.mark.parametrize(
    ("isbn10", "isbn13"),
    [("0547928220", "9780547928227"), ("0441172717", "9780441172719"),
     ("080442957X", "9780804429573"), ("0-14-143951-3", "9780141439518")],
)  # fmt: skip
def test_isbn10_and_isbn13_are_one_key(isbn10: str, isbn13: str) -> None:
    assert isbn_key(isbn10) == isbn_key(isbn13) == isbn13


@given(isbn10=ISBN10, hyphen_at=st.integers(1, 9))
def test_any_isbn10_keys_as_its_isbn13_however_punctuated(isbn10: str, hyphen_at: int) -> None:
    isbn13 = isbn13_of(isbn10)
    written = f"{isbn10[:hyphen_at]}-{isbn10[hyphen_at:]}".lower()
    assert isbn_key(written) == isbn_key(isbn13) == isbn13
    assert len(isbn13) == 13 and isbn13.startswith("978")


def test_isbns_that_differ_are_different_keys() -> None:
    assert isbn_key("9780547928227") != isbn_key("9791234567896")
    assert isbn_key("") is None and isbn_key(None) is None
    # Digits that are not ASCII are not ISBN characters (and not the fast path's).
    assert isbn_key("٩٧٨٠٥٤٧٩٢٨٢٢٧") is None


@given(
    words=WORDS,
    author=WORDS,
    separator=st.sampled_from([" ", "  ", "\t", " - ", ": ", ", "]),
    punctuation=st.sampled_from(["", "!", ".", "?", "'"]),
    series=st.sampled_from(["", " (Dune, #1)", " (The Expanse #3.5)", "(Discworld, #1-2) "]),
)
def test_title_keys_ignore_case_spacing_punctuation_and_series(
    words: list[str], author: list[str], separator: str, punctuation: str, series: str
) -> None:
    plain = title_key(" ".join(words), " ".join(author))
    written = separator.join(w.upper() for w in words) + punctuation + series
    assert title_key(written, "  ".join(author).title() + ".") == plain


def test_title_keys_use_the_first_author_only() -> None:
    key = title_key("Good Omens", "Terry Pratchett")
    assert title_key("Good Omens", "Terry Pratchett & Neil Gaiman") == key
    assert title_key("Good Omens", "terry pratchett, Neil Gaiman") == key
    assert title_key("Good Omens", "Neil Gaiman") != key
    assert title_key("Good Omens 2", "Terry Pratchett") != key


def test_books_without_isbn_match_by_title_and_author_either_way() -> None:
    seen = Seen.of_library([("9780441172719", "Dune", "Frank Herbert"), (None, "Emma", "Austen")])
    assert seen.check("0441172717", "Another title", None, 2) == (
        "already in your library (the same ISBN)"
    )
    assert seen.check(None, "DUNE (Dune, #1)", "frank herbert", 3) == (
        "already in your library (the same title and author)"
    )
    # A book with an ISBN repeats one without (same title and author) ...
    assert seen.check("9780141439587", "Emma.", "Austen", 4) == (
        "already in your library (the same title and author)"
    )
    # ... but two different ISBNs are two editions, whatever their titles.
    assert seen.check("9780593099322", "Dune", "Frank Herbert", 5) is None
    assert seen.check("9780593099322", "Dune", "Frank Herbert", 6) == "the same ISBN as row 5"
    assert seen.check(None, "New", "X", 7) is None
    assert seen.check(None, "new", "x", 8) == "the same title and author as row 7"
