"""goodreads_export: the owner's library as Goodreads' "Export Library" CSV, streamed by COPY.

Goodreads and The StoryGraph both import this format, so it is how a library moves to them:
- the 24 columns of Goodreads' header, in its order; columns BookLogr has no data for are empty;
- ISBN / ISBN13 as Goodreads writes them, the formula ="…" (keeps leading zeros in a
  spreadsheet); only ISBN-shaped values (hyphens and spaces dropped) go there, each in the column
  of its length, since importers match books on them;
- Exclusive Shelf from the reading status: read, currently-reading, to-read, did-not-finish (a
  custom exclusive shelf, named as StoryGraph names that status); Bookshelves as Goodreads fills
  it, with the exclusive shelf except `read`;
- My Rating a whole number of stars, 0 meaning unrated: half up, and under 1 still rates 1;
- public notes into My Review (line breaks as <br/>), the others into Private Notes;
- Date Read from BookLogr's finished reading sessions, Date Added from created_on.
Text cells that a spreadsheet would run as a formula get the same apostrophe as in csv_export
(this service's goodreads_import strips it); the ISBN cells are formulas by design and hold
nothing but digits and X.
"""

from __future__ import annotations

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.books import FINISHED_READS_OF_BOOK, neutralised_sql
from booklogr_tasks.jobs.exports.base import register_export, stream_copy
from booklogr_tasks.storage import PendingExport

GOODREADS_COLUMNS = (
    "Book Id",
    "Title",
    "Author",
    "Author l-f",
    "Additional Authors",
    "ISBN",
    "ISBN13",
    "My Rating",
    "Average Rating",
    "Publisher",
    "Binding",
    "Number of Pages",
    "Year Published",
    "Original Publication Year",
    "Date Read",
    "Date Added",
    "Bookshelves",
    "Bookshelves with positions",
    "Exclusive Shelf",
    "My Review",
    "Spoiler",
    "Private Notes",
    "Read Count",
    "Owned Copies",
)

# BookLogr's reading status → Goodreads' exclusive shelf; anything else is to-read.
SHELVES = {
    "Read": "read",
    "Currently reading": "currently-reading",
    "To be read": "to-read",
    "Did not finish": "did-not-finish",
}

_SHELF = (
    "CASE b.reading_status "
    + " ".join(f"WHEN '{status}' THEN '{shelf}'" for status, shelf in SHELVES.items())
    + " ELSE 'to-read' END"
)
_NOTE = r"""CASE WHEN n.quote_page IS NOT NULL THEN 'p. ' || n.quote_page || ': ' ELSE '' END
            || n.content"""
# Per book, once: when it was last finished and how often (reading history), its ISBN without
# punctuation, its author inverted the way Goodreads writes it
# (only a two-word name is swapped, "Jane Austen" → "Austen, Jane"; lists and already-inverted
# names stay as they are), and its notes: public notes are the review (Goodreads shows a review
# as HTML, so line breaks become <br/>), the others stay private.
_PER_BOOK = rf"""
  CROSS JOIN LATERAL {FINISHED_READS_OF_BOOK} f
  CROSS JOIN LATERAL (
      SELECT upper(translate(b.isbn, E' -\t\n\r', '')) AS isbn,
             CASE WHEN b.author ~ '^\s*\S+\s+\S+\s*$'
                  THEN regexp_replace(btrim(b.author), '^(\S+)\s+(\S+)$', '\2, \1')
                  ELSE b.author END AS author_lf) x
  CROSS JOIN LATERAL (
      SELECT string_agg(replace(replace({_NOTE}, E'\r\n', '<br/>'), E'\n', '<br/>'),
                        '<br/><br/>' ORDER BY n.id)
                 FILTER (WHERE n.visibility = 'public') AS review,
             string_agg({_NOTE}, E'\n\n' ORDER BY n.id)
                 FILTER (WHERE n.visibility IS DISTINCT FROM 'public') AS private
        FROM notes n WHERE n.book_id = b.id) nt"""

GOODREADS_SELECT = f"""
SELECT NULL::text AS "Book Id",
       {neutralised_sql("b.title")} AS "Title",
       {neutralised_sql("b.author")} AS "Author",
       {neutralised_sql("x.author_lf")} AS "Author l-f",
       NULL::text AS "Additional Authors",
       '="' || CASE WHEN x.isbn ~ '^[0-9]{{9}}[0-9X]$' THEN x.isbn ELSE '' END || '"' AS "ISBN",
       '="' || CASE WHEN x.isbn ~ '^[0-9]{{13}}$' THEN x.isbn ELSE '' END || '"' AS "ISBN13",
       CASE WHEN b.rating IS NULL OR b.rating <= 0 THEN 0
            ELSE least(greatest(round(b.rating), 1), 5)::int END AS "My Rating",
       NULL::text AS "Average Rating",
       NULL::text AS "Publisher",
       NULL::text AS "Binding",
       CASE WHEN b.total_pages > 0 THEN b.total_pages END AS "Number of Pages",
       NULL::text AS "Year Published",
       NULL::text AS "Original Publication Year",
       to_char(f.finished_on, 'YYYY/MM/DD') AS "Date Read",
       to_char(b.created_on, 'YYYY/MM/DD') AS "Date Added",
       nullif({_SHELF}, 'read') AS "Bookshelves",
       NULL::text AS "Bookshelves with positions",
       {_SHELF} AS "Exclusive Shelf",
       {neutralised_sql("nt.review")} AS "My Review",
       NULL::text AS "Spoiler",
       {neutralised_sql("nt.private")} AS "Private Notes",
       CASE WHEN b.reading_status = 'Read' THEN greatest(f.reads, 1)
            ELSE f.reads END AS "Read Count",
       0 AS "Owned Copies"
  FROM books b {_PER_BOOK}
 WHERE b.owner_id = %(owner)s
 ORDER BY b.id"""

COPY_GOODREADS = (
    f"COPY ({GOODREADS_SELECT}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
)


def write_goodreads(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    return stream_copy(conn, ctx, owner_id, sink, COPY_GOODREADS)


SPEC = register_export(
    "goodreads_export",
    "goodreads",
    write_goodreads,
    "All of the owner's books as Goodreads' library export CSV, which Goodreads and "
    "The StoryGraph import (shelves from reading status, integer ratings, notes as review "
    "and private notes).",
    content_type="text/csv",
    extension="csv",  # Goodreads' export is a CSV file
    snapshot=False,  # one COPY: its own snapshot
)
