"""`booklogr-tasks dev --demo`: a small reader's library for user 1, and a curl walk-through.

The library looks like a person's own: books read, being read, waiting and given up, with
ratings, notes and the dates they were read (BookLogr's `reading_sessions`), so the first HTML
report and CSV export show what a real one would. The awkward cases (formulas, scripts, line
breaks in cells) live in the tests, not here.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime

from booklogr_tasks.db.pool import connect

# BookLogr's first user, and the user every request is in single-user mode.
DEMO_USER_ID = 1


def _isbn13(first12: str) -> str:
    """Complete an ISBN-13 with its check digit."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Note:
    content: str
    quote_page: int | None = None
    visibility: str = "hidden"


@dataclass(frozen=True)
class DemoBook:
    title: str
    author: str
    isbn12: str
    total_pages: int
    status: str
    description: str
    rating: float | None = None
    current_page: int | None = None
    # Reading dates (YYYY-MM-DD): started, and finished or abandoned.
    started: str | None = None
    ended: str | None = None
    notes: tuple[Note, ...] = field(default_factory=tuple)

    @property
    def isbn(self) -> str:
        return _isbn13(self.isbn12)

    @property
    def page(self) -> int:
        if self.current_page is not None:
            return self.current_page
        return self.total_pages if self.status == "Read" else 0


READ, READING, TO_READ, DNF = "Read", "Currently reading", "To be read", "Did not finish"

LIBRARY: tuple[DemoBook, ...] = (
    DemoBook(
        "The Left Hand of Darkness", "Ursula K. Le Guin", "978044100478", 304, READ,
        "An envoy comes alone to a winter world whose people have no fixed sex.",
        rating=5, started="2025-01-04", ended="2025-01-19",
        notes=(
            Note("The crossing of the ice is the best long walk in any book I know.", 220),
            Note("Read again in ten years.", visibility="public"),
        ),
    ),
    DemoBook(
        "A Wizard of Earthsea", "Ursula K. Le Guin", "978054772202", 183, READ,
        "A gifted, proud boy learns what a true name costs.",
        rating=4, started="2025-03-02", ended="2025-03-09",
    ),
    DemoBook(
        "Piranesi", "Susanna Clarke", "978163557563", 272, READ,
        "A man lives alone in a house of endless halls and tides, and keeps careful journals.",
        rating=4.5, started="2025-06-14", ended="2025-06-17",
        notes=(Note("Two evenings, and the House stays with you for weeks."),),
    ),
    DemoBook(
        "The Remains of the Day", "Kazuo Ishiguro", "978067973172", 258, READ,
        "An English butler drives west in 1956 and looks back on a life of service.",
        rating=4.5, started="2025-09-21", ended="2025-10-02",
        notes=(Note("Everything important happens in what Stevens does not say.", 233),),
    ),
    DemoBook(
        "Project Hail Mary", "Andy Weir", "978059313520", 476, READ,
        "A schoolteacher wakes up alone on a spaceship with no memory of why.",
        rating=4, started="2026-02-08", ended="2026-02-15",
    ),
    DemoBook(
        "Middlemarch", "George Eliot", "978014143954", 880, READ,
        "A provincial town, a handful of marriages and the reform years of 1829 to 1832.",
        rating=5, started="2026-03-01", ended="2026-05-24",
        notes=(
            Note("Took the spring. Worth every week of it.", visibility="public"),
            Note("Dorothea and Lydgate: two ambitions, two kinds of failure.", 512),
        ),
    ),
    DemoBook(
        "The Dispossessed", "Ursula K. Le Guin", "978006051275", 387, READING,
        "A physicist leaves his anarchist moon for the rich planet it broke away from.",
        current_page=142, started="2026-11-03",
    ),
    DemoBook(
        "Wolf Hall", "Hilary Mantel", "978031242998", 604, READING,
        "Thomas Cromwell, a blacksmith's son, rises at the court of Henry VIII.",
        current_page=210, started="2026-10-12",
        notes=(Note("Keep a list of the Thomases.", 60),),
    ),
    DemoBook(
        "Ancillary Justice", "Ann Leckie", "978031624662", 416, TO_READ,
        "The last fragment of a starship's mind, in one human body, seeks revenge.",
    ),
    DemoBook(
        "The Name of the Rose", "Umberto Eco", "978015600131", 592, TO_READ,
        "Murders in an Italian abbey in 1327, and a library no one may enter.",
    ),
    DemoBook(
        "Kindred", "Octavia E. Butler", "978080708310", 264, TO_READ,
        "A Black writer in 1976 Los Angeles is pulled back to an antebellum plantation.",
        notes=(Note("Recommended by Sam at the book club."),),
    ),
    DemoBook(
        "Braiding Sweetgrass", "Robin Wall Kimmerer", "978157131356", 391, TO_READ,
        "A botanist and member of the Potawatomi Nation on what plants teach.",
    ),
    DemoBook(
        "Ulysses", "James Joyce", "978067972276", 730, DNF,
        "One day in Dublin, 16 June 1904, told every way a day can be told.",
        rating=2, current_page=112, started="2025-07-01", ended="2025-07-20",
        notes=(Note("Stopped in the fourth episode. Next time with a guide.", 112),),
    ),
    DemoBook(
        "Gravity's Rainbow", "Thomas Pynchon", "978014310593", 776, DNF,
        "London, 1944: V-2 rockets, and an American lieutenant who may predict them.",
        current_page=95, started="2026-01-05", ended="2026-01-18",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DemoState:
    """What `--demo` found and did: books added now, and the books user 1 has in all."""

    added: int
    books: int


def _day(value: str) -> datetime:
    return datetime.fromisoformat(value)


def seed_demo_library(database_url: str) -> DemoState:
    """Give the demo user the library, unless they already have books."""
    with connect(database_url) as conn, conn.transaction():
        # One seeding at a time, so two `dev --demo` started together add one library.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('booklogr-tasks demo'))")
        row = conn.execute(
            "SELECT count(*) AS n FROM books WHERE owner_id = %s", (DEMO_USER_ID,)
        ).fetchone()
        existing = int(row["n"]) if row else 0
        if existing:
            return DemoState(added=0, books=existing)
        for book in LIBRARY:
            created = _day(book.started) if book.started else _day("2024-12-20")
            inserted = conn.execute(
                """INSERT INTO books (title, isbn, description, author, reading_status,
                                      current_page, total_pages, rating, owner_id, created_on)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (
                    book.title, book.isbn, book.description, book.author, book.status,
                    book.page, book.total_pages, book.rating, DEMO_USER_ID, created,
                ),
            ).fetchone()  # fmt: skip
            assert inserted is not None
            book_id = inserted["id"]
            # Notes written as the book ended (or, while it is being read, as it began).
            noted = _day(book.ended) if book.ended else created
            for note in book.notes:
                conn.execute(
                    """INSERT INTO notes (book_id, content, quote_page, visibility, created_on)
                       VALUES (%s, %s, %s, %s, %s)""",
                    (book_id, note.content, note.quote_page, note.visibility, noted),
                )
            if book.started:
                # As BookLogr records them: one session per reading, closed with the status
                # it ended in; the current one is still open.
                conn.execute(
                    """INSERT INTO reading_sessions (book_id, status, start_date, end_date)
                       VALUES (%s, %s, %s, %s)""",
                    (
                        book_id,
                        book.status,
                        _day(book.started),
                        _day(book.ended) if book.ended else None,
                    ),
                )
    return DemoState(added=len(LIBRARY), books=len(LIBRARY))


def curl_walkthrough(base_url: str, token: str | None, state: DemoState) -> str:
    """Shell lines that export user 1's library as CSV, wait for it and download it."""
    auth = '-H "Authorization: Bearer $TOKEN" ' if token else ""
    task_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"task_id\"])'"
    download = 'python3 -c \'import json,sys; print(json.load(sys.stdin)["result"]["download"])\''
    body = """'{"type": "csv_export", "data": {}}'"""
    books = f"{state.books} book{'' if state.books == 1 else 's'}"
    library = (
        f"the demo library you just got ({books})"
        if state.added
        else f"user {DEMO_USER_ID}'s library ({books}, already there before)"
    )
    lines = [
        f"API={shlex.quote(base_url)}",
        *([f"TOKEN={shlex.quote(token)}"] if token else []),
        f"# 1. ask for a CSV export of {library}",
        f'TASK=$(curl -fsS -X POST "$API/v1/tasks" {auth}'
        f"-H 'Content-Type: application/json' -d {body} | {task_id})",
        "# 2. poll until it has finished",
        f'until curl -fsS "$API/v1/tasks/$TASK" {auth}'
        """| grep -Eq '"status": ?"(success|failure)"'; do sleep 1; done""",
        f'curl -fsS "$API/v1/tasks/$TASK" {auth}; echo',
        "# 3. download the file",
        f'DOWNLOAD=$(curl -fsS "$API/v1/tasks/$TASK" {auth}| {download})',
        f'curl -fsS -L "$API$DOWNLOAD" {auth}-o booklogr-export.csv',
        "head -5 booklogr-export.csv",
        '# "html_export" instead of "csv_export" gives a reading report to open in a browser.',
    ]
    return "\n".join(lines)
