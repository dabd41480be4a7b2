"""What the HTML reading report says about a library, from SQL aggregates alone.

The summary (books per status, books and pages read per year, ratings, most-read authors) is a
handful of GROUP BY queries whose answers are small whatever the library's size; the books
themselves are only ever streamed (see html.py), never held.

Books read per year: a book counts in the year of each of its finished reading sessions
(BookLogr's reading history, sessions closed as Read); a book marked Read without any finished
session counts in the year it was added, and the chart says how many are dated that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from markupsafe import Markup

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.exports.charts import Bar, bar_chart, fmt_int


@dataclass(frozen=True)
class Group:
    name: str  # as BookLogr spells the reading status
    anchor: str  # the id of its section in the page


# The order the report lists books in.
GROUPS = (
    Group("Currently reading", "currently-reading"),
    Group("Read", "read"),
    Group("To be read", "to-be-read"),
    Group("Did not finish", "did-not-finish"),
    Group("Without a status", "without-status"),  # NULL, or a status BookLogr does not define
)
OTHER = len(GROUPS) - 1
READ = 1

# A book's group: its index in GROUPS.
GROUP_OF = (
    "CASE b.reading_status "
    + " ".join(f"WHEN '{g.name}' THEN {i}" for i, g in enumerate(GROUPS[:OTHER]))
    + f" ELSE {OTHER} END"
)

STATUS_COUNTS = f"""
SELECT {GROUP_OF} AS grp, count(*) AS books FROM books b
 WHERE b.owner_id = %(owner)s GROUP BY 1 ORDER BY 1"""

TOTALS = """
SELECT count(*) AS books,
       count(*) FILTER (WHERE b.reading_status = 'Read') AS read,
       coalesce(sum(b.total_pages) FILTER (WHERE b.reading_status = 'Read'), 0) AS pages_read,
       count(b.rating) AS rated,
       avg(b.rating) AS average
  FROM books b WHERE b.owner_id = %(owner)s"""

READ_PER_YEAR = """
WITH finished AS (
    SELECT DISTINCT s.book_id, extract(year FROM s.end_date)::int AS year
      FROM reading_sessions s JOIN books b ON b.id = s.book_id
     WHERE b.owner_id = %(owner)s AND s.status = 'Read' AND s.end_date IS NOT NULL
), dated AS (
    SELECT f.year, b.total_pages, true AS by_finish
      FROM finished f JOIN books b ON b.id = f.book_id
    UNION ALL
    SELECT extract(year FROM b.created_on)::int, b.total_pages, false
      FROM books b
     WHERE b.owner_id = %(owner)s AND b.reading_status = 'Read' AND b.created_on IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM finished f WHERE f.book_id = b.id)
)
SELECT year,
       count(*) AS books,
       coalesce(sum(total_pages), 0) AS pages,
       count(*) FILTER (WHERE NOT by_finish) AS books_by_added,
       coalesce(sum(total_pages) FILTER (WHERE NOT by_finish), 0) AS pages_by_added
  FROM dated GROUP BY year ORDER BY year"""

# Ratings to the nearest half star.
RATINGS = """
SELECT round(b.rating * 2) / 2 AS stars, count(*) AS books FROM books b
 WHERE b.owner_id = %(owner)s AND b.rating IS NOT NULL GROUP BY 1 ORDER BY 1 DESC"""

TOP_AUTHORS = 10
MOST_READ_AUTHORS = f"""
SELECT b.author, count(*) AS books, coalesce(sum(b.total_pages), 0) AS pages FROM books b
 WHERE b.owner_id = %(owner)s AND b.reading_status = 'Read' AND btrim(b.author) <> ''
 GROUP BY b.author ORDER BY books DESC, pages DESC, b.author LIMIT {TOP_AUTHORS}"""


@dataclass(frozen=True)
class YearRead:
    year: int
    books: int
    pages: int
    books_by_added: int  # of `books`, those dated by when they were added
    pages_by_added: int


@dataclass(frozen=True)
class Summary:
    books: int
    read: int
    pages_read: int
    rated: int
    average: Decimal | None
    statuses: list[tuple[Group, int]]  # every group, in GROUPS order, the last only when used
    years: list[YearRead]
    ratings: list[tuple[Decimal, int]]  # half stars, highest first
    authors: list[tuple[str, int, int]]  # author, books read, pages read

    def count_of(self, group: Group) -> int:
        return next((n for g, n in self.statuses if g == group), 0)

    @property
    def year_basis(self) -> str:
        """Which dates the years come from: finished, added, mixed, or none (no read books)."""
        if not self.years:
            return "none"
        by_added = sum(y.books_by_added for y in self.years)
        if by_added == 0:
            return "finished"
        return "added" if by_added == sum(y.books for y in self.years) else "mixed"

    def charts(self) -> dict[str, Markup]:
        by_added = self.year_basis in ("added", "mixed")
        return {
            "status": bar_chart(
                "status",
                [Bar(g.name, n) for g, n in self.statuses],
                "Books per reading status",
            ),
            "years_books": bar_chart(
                "years-books",
                [
                    Bar(str(y.year), y.books, y.books_by_added if by_added else 0)
                    for y in self.years
                ],
                "Books read per year",
            ),
            "years_pages": bar_chart(
                "years-pages",
                [
                    Bar(str(y.year), y.pages, y.pages_by_added if by_added else 0)
                    for y in self.years
                ],
                "Pages read per year",
            ),
            "ratings": bar_chart(
                "ratings",
                [Bar(f"{stars_text(s)} {rating_text(s)}", n) for s, n in self.ratings],
                "Books per rating",
            ),
            "authors": bar_chart(
                "authors",
                [
                    Bar(a, n, text=f"{fmt_int(n)} book{'' if n == 1 else 's'}")
                    for a, n, _ in self.authors
                ],
                "Most-read authors",
            ),
        }


def summarise(conn: Conn, owner_id: int) -> Summary:
    params = {"owner": owner_id}
    totals = conn.execute(TOTALS, params).fetchone()
    assert totals is not None
    counts = {int(r["grp"]): int(r["books"]) for r in conn.execute(STATUS_COUNTS, params)}
    statuses = [
        (group, counts.get(i, 0))
        for i, group in enumerate(GROUPS)
        if i != OTHER or counts.get(i, 0)
    ]
    return Summary(
        books=int(totals["books"]),
        read=int(totals["read"]),
        pages_read=int(totals["pages_read"]),
        rated=int(totals["rated"]),
        average=totals["average"],
        statuses=statuses,
        years=[_year(r) for r in conn.execute(READ_PER_YEAR, params)],
        ratings=[(Decimal(r["stars"]), int(r["books"])) for r in conn.execute(RATINGS, params)],
        authors=[
            (str(r["author"]), int(r["books"]), int(r["pages"]))
            for r in conn.execute(MOST_READ_AUTHORS, params)
        ],
    )


def _year(row: dict[str, Any]) -> YearRead:
    return YearRead(
        year=int(row["year"]),
        books=int(row["books"]),
        pages=int(row["pages"]),
        books_by_added=int(row["books_by_added"]),
        pages_by_added=int(row["pages_by_added"]),
    )


# --- how ratings read ---------------------------------------------------------------------------


def rating_text(rating: Decimal | None) -> str:
    """4.50 → "4.5", 5.00 → "5", 3.25 → "3.25": no trailing zeros."""
    if rating is None:
        return ""
    return f"{rating.normalize():f}"


def stars_text(rating: Decimal | None) -> str:
    """Five-star glyphs to the nearest half star: 3.5 → ★★★½☆."""
    if rating is None:
        return ""
    halves = int((rating * 2).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    halves = max(0, min(halves, 10))
    full, half = divmod(halves, 2)
    return "★" * full + ("½" if half else "") + "☆" * (5 - full - half)
