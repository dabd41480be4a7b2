"""How exports read a user's books: the columns of BookLogr's CSV and the notes as JSON."""

from __future__ import annotations

# BookLogr's CSV columns, in the order its importer requires.
CSV_COLUMNS = (
    "title",
    "isbn",
    "description",
    "reading_status",
    "current_page",
    "total_pages",
    "author",
    "rating",
    "notes",
)
TEXT_COLUMNS = frozenset({"title", "isbn", "description", "reading_status", "author"})

# A leading =, +, -, @, tab or CR makes a spreadsheet run the cell as a formula. Such cells get
# one leading apostrophe; so do cells that already start with apostrophes before such a
# character, which is what lets the importer strip exactly one and round-trip every value.
FORMULA_PATTERN = r"^'*[-=+@\t\r]"

# Each book's notes, oldest first, as one JSON array (`[]` when it has none).
NOTES_JSON = """coalesce((
    SELECT json_agg(json_build_object(
               'content', n.content, 'quote_page', n.quote_page,
               'visibility', n.visibility, 'created_on', n.created_on) ORDER BY n.id)
      FROM notes n WHERE n.book_id = b.id), '[]'::json)"""


def neutralised_sql(expression: str) -> str:
    """SQL for a text expression whose value is neutralised when it starts like a formula."""
    pattern = FORMULA_PATTERN.replace("'", "''")
    return f"CASE WHEN {expression} ~ '{pattern}' THEN '''' || {expression} ELSE {expression} END"


def neutralised(column: str) -> str:
    """SQL for a text column of books with formula-leading values neutralised."""
    return f"{neutralised_sql(f'b.{column}')} AS {column}"


def csv_select() -> str:
    """One row per book of %(owner)s, in CSV column order, oldest book first."""
    cells = [neutralised(c) if c in TEXT_COLUMNS else f"b.{c}" for c in CSV_COLUMNS if c != "notes"]
    return (
        f"SELECT {', '.join(cells)}, {NOTES_JSON}::text AS notes "
        "FROM books b WHERE b.owner_id = %(owner)s ORDER BY b.id"
    )


def unneutralise(value: str) -> str:
    """The importer's half of the formula guard: drop the one apostrophe the export added."""
    if len(value) >= 2 and value[0] == "'":
        stripped = value.lstrip("'")
        if stripped and stripped[0] in "-=+@\t\r":
            return value[1:]
    return value


# Per book of %(owner)s that BookLogr's reading history shows as finished: when it was last
# finished and how many times (sessions closed as Read). Books never finished there have no row.
FINISHED_READS = """
SELECT s.book_id, max(s.end_date) AS finished_on, count(*) AS reads
  FROM reading_sessions s JOIN books fb ON fb.id = s.book_id
 WHERE fb.owner_id = %(owner)s AND s.status = 'Read' AND s.end_date IS NOT NULL
 GROUP BY s.book_id"""

# The same for one book `b`, as a LATERAL subquery (one index lookup per book, for exports that
# stream in id order): always one row, finished_on NULL and reads 0 when never finished.
FINISHED_READS_OF_BOOK = """(
    SELECT max(s.end_date) AS finished_on, count(*) AS reads FROM reading_sessions s
     WHERE s.book_id = b.id AND s.status = 'Read' AND s.end_date IS NOT NULL)"""
