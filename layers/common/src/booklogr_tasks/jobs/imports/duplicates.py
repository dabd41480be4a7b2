"""When an imported book is one the owner already has.

Two books are the same when both have an ISBN and the ISBNs are equal (ISBN-10 and ISBN-13 of
a book are one key: every ISBN is compared as ISBN-13). When either has no ISBN, they are the
same when their titles and first authors are, ignoring case, spacing, punctuation and a
Goodreads-style series suffix such as "(Dune, #1)".

The keys are computed here, in Python, for the owner's books and for the file's rows alike, so
what an import stores always matches itself: importing a file twice adds nothing the second time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_NOT_ISBN_CHARACTER = re.compile(r"[^0-9X]")
# "(Dune, #1)", "(The Expanse #3.5)", "(Discworld, #1-2)" at the end of a title.
_SERIES_SUFFIX = re.compile(r"\s*\([^()]*#\s*[0-9][^()]*\)\s*$")
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")
# The same for casefolded ASCII text, where it is quicker to match (most titles and names).
_NOT_ASCII_LETTER_OR_DIGIT = re.compile(r"[^a-z0-9]+")
# Several authors are written "A, B", "A & B" or "A; B": the first one names the book.
_AUTHOR_SEPARATOR = re.compile(r"[,&;]")

IN_LIBRARY = 0  # the row "number" of a book that was in the library before the import


def isbn_key(isbn: str | None) -> str | None:
    """The ISBN as ISBN-13 digits; other values (not an ISBN) compare as written, compacted."""
    if not isbn:
        return None
    if len(isbn) == 13 and isbn.isascii() and isbn.isdigit():  # what importers hand over
        return isbn
    compact = _NOT_ISBN_CHARACTER.sub("", isbn.upper())
    if len(compact) == 10 and compact[:9].isdigit():
        return isbn13_of(compact)
    return compact or None


def isbn13_of(isbn10: str) -> str:
    """ISBN-10 → ISBN-13: prefix 978, recompute the check digit."""
    body = "978" + isbn10[:9]
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return f"{body}{(10 - total % 10) % 10}"


def title_key(title: str | None, author: str | None) -> str:
    """Title and first author, without case, spacing, punctuation or series suffix."""
    title = title or ""
    if "#" in title:  # most titles have no series suffix: skip the search
        title = _SERIES_SUFFIX.sub("", title)
    first_author = _AUTHOR_SEPARATOR.split(author or "", 1)[0]
    return f"{_letters_and_digits(title)}|{_letters_and_digits(first_author)}"


def _letters_and_digits(text: str) -> str:
    if text.isascii():
        return _NOT_ASCII_LETTER_OR_DIGIT.sub("", text.casefold())
    return _NOT_LETTER_OR_DIGIT.sub("", unicodedata.normalize("NFKC", text).casefold())


class Seen:
    """The books an import must not add again: the owner's library, then each row it keeps.

    Each key maps to the row that brought it (IN_LIBRARY for the library's books), so a skipped
    row can say which book it repeats.
    """

    def __init__(self) -> None:
        self._isbns: dict[str, int] = {}
        self._titles: dict[str, int] = {}
        self._titles_without_isbn: dict[str, int] = {}

    @classmethod
    def of_library(cls, books: Iterable[tuple[str | None, str | None, str | None]]) -> Seen:
        """From the owner's books as (isbn, title, author)."""
        seen = cls()
        for isbn, title, author in books:
            seen.add(isbn_key(isbn), title_key(title, author), IN_LIBRARY)
        return seen

    def add(self, isbn: str | None, title: str, row: int) -> None:
        if isbn is not None:
            self._isbns.setdefault(isbn, row)
        else:
            self._titles_without_isbn.setdefault(title, row)
        self._titles.setdefault(title, row)

    def duplicate(self, isbn: str | None, title: str) -> str | None:
        """Why a book with these keys is a duplicate, or None when it is new."""
        if isbn is not None:
            row = self._isbns.get(isbn)
            if row is not None:
                return _reason(row, "the same ISBN")
            row = self._titles_without_isbn.get(title)
        else:
            row = self._titles.get(title)
        return None if row is None else _reason(row, "the same title and author")

    def check(
        self, isbn: str | None, title: str | None, author: str | None, row: int
    ) -> str | None:
        """Why this book is a duplicate; None when it is new (and from now on, seen)."""
        isbn_k, title_k = isbn_key(isbn), title_key(title, author)
        reason = self.duplicate(isbn_k, title_k)
        if reason is None:
            self.add(isbn_k, title_k, row)
        return reason


def _reason(row: int, what: str) -> str:
    if row == IN_LIBRARY:
        return f"already in your library ({what})"
    return f"{what} as row {row}"
