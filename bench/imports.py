"""5. Goodreads import through a real listener vs loading the same rows by hand.

The file is stored as an upload in the listener's export folder (as the API stores it) and the
task names it. Task time: from the task's commit until a client polling every 5 ms sees it
succeed (pickup, reading the 24-column file from the store, validating every row, the duplicate
check and the load of books, notes and reading sessions).
Baselines: `COPY` of the same rows, already parsed, into books, notes and reading_sessions (the
floor), and a loop that inserts one row and commits, as BookLogr's importer does today. The loop
runs on a slice of the file and is scaled to the full size (at a few hundred rows a second, 100k
rows would take minutes).
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime

import psycopg
from booklogr_tasks.jobs import known_types
from booklogr_tasks.storage import LocalFolderStore, upload_key

from bench import harness
from bench.export import run_task
from bench.harness import Mode, Result, Row

NAME = "import"
TITLE = "Goodreads import vs COPY and vs row-by-row commits"
OWNER = 1
TARGET = 2.0
RSS_TARGET = 4.0  # peak RSS growth, as a multiple of the file's size

HEADER = [
    "Book Id", "Title", "Author", "Author l-f", "Additional Authors", "ISBN", "ISBN13",
    "My Rating", "Average Rating", "Publisher", "Binding", "Number of Pages", "Year Published",
    "Original Publication Year", "Date Read", "Date Added", "Bookshelves",
    "Bookshelves with positions", "Exclusive Shelf", "My Review", "Spoiler", "Private Notes",
    "Read Count", "Owned Copies",
]  # fmt: skip
SHELVES = ("read", "currently-reading", "to-read")

# What the importer writes for each row, as plain tuples for the baselines: the book's columns,
# its review (a note) and its read date (a finished reading session).
Book = tuple[str, str, str, str, int, int, int | None, datetime, str | None, datetime | None]


def goodreads_file(n: int) -> tuple[str, list[Book]]:
    """A Goodreads export of n distinct books (every other one reviewed), and its rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    books: list[Book] = []
    for i in range(1, n + 1):
        shelf = SHELVES[i % 3]
        isbn13 = f"978{i:010d}"
        pages = 100 + i % 400
        added = datetime(2020 + i % 5, 1 + i % 12, 1 + i % 28)
        review = f"Loved it, part {i}.<br/>Second line" if i % 2 == 0 else ""
        rating = i % 6
        writer.writerow(
            [i, f"Title {i}: a subtitle, with comma", f"Author {i % 5000}", "", "",
             f'="{i:010d}"', f'="{isbn13}"', rating, "3.9", "Publisher", "Paperback", pages,
             2001, 1999, added.strftime("%Y/%m/%d") if shelf == "read" else "",
             added.strftime("%Y/%m/%d"), "", "", shelf, review, "", "", 1, 0]
        )  # fmt: skip
        status = {"read": "Read", "currently-reading": "Currently reading"}.get(shelf, "To be read")
        books.append(
            (f"Title {i}: a subtitle, with comma", isbn13, f"Author {i % 5000}", status,
             pages if status == "Read" else 0, pages, rating or None, added,
             review.replace("<br/>", "\n") or None, added if shelf == "read" else None)
        )  # fmt: skip
    return out.getvalue(), books


BOOK_COLUMNS = """books (title, isbn, author, reading_status, current_page, total_pages, rating,
                  owner_id, created_on)"""
INSERT_BOOK = f"INSERT INTO {BOOK_COLUMNS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
INSERT_NOTE = "INSERT INTO notes (book_id, content) VALUES (%s, %s)"


def copy_rows(url: str, books: list[Book]) -> float:
    """The floor: the rows already parsed, COPYed into books, notes and reading sessions in one
    transaction."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        first = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('books', 'id')) FROM generate_series(1, %s)",
            (len(books),),
        ).fetchall()
        ids = [r[0] for r in first]
        with conn.cursor() as cur:
            with cur.copy(
                f"COPY {BOOK_COLUMNS.replace('books (', 'books (id, ')} FROM STDIN"
            ) as cp:
                for book_id, b in zip(ids, books, strict=True):
                    cp.write_row((book_id, *b[:7], OWNER, b[7]))
            with cur.copy("COPY notes (book_id, content) FROM STDIN") as cp:
                for book_id, b in zip(ids, books, strict=True):
                    if b[8]:
                        cp.write_row((book_id, b[8]))
            with cur.copy(
                "COPY reading_sessions (book_id, status, start_date, end_date) FROM STDIN"
            ) as cp:
                for book_id, b in zip(ids, books, strict=True):
                    if b[9]:
                        cp.write_row((book_id, b[3], b[9], b[9]))
        conn.commit()
        return time.perf_counter() - started


def row_by_row(url: str, books: list[Book]) -> float:
    """BookLogr today: insert a book (and its note), commit, next row."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for b in books:
            book_id = conn.execute(INSERT_BOOK, (*b[:7], OWNER, b[7])).fetchone()[0]  # type: ignore[index]
            if b[8]:
                conn.execute(INSERT_NOTE, (book_id, b[8]))
            conn.commit()
        return time.perf_counter() - started


def clear(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("TRUNCATE books, notes, reading_sessions, field_values")


def upload(store: LocalFolderStore, text: str) -> str:
    """The file stored as the API stores an upload; the task data that names it."""
    key = upload_key(OWNER)
    data = text.encode()
    store.save_upload(key, io.BytesIO(data), len(data))
    return json.dumps({"owner_id": OWNER, "file": key})


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    if "goodreads_import" not in known_types():
        result.status = "not available"
        result.note = "goodreads_import is not in the job registry"
        return result
    n = mode.import_rows
    text, books = goodreads_file(n)
    file_mb = len(text.encode()) / 1e6
    warm_text, warm_books = goodreads_file(50)
    runs, copies, loops = [], [], []
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        store = LocalFolderStore(tmp / "exports")
        env = harness.process_env(url, tmp / "exports")
        listener = harness.processes([harness.listener_command(1)], env, tmp, NAME)
        with listener as (proc,), harness.connect(url) as conn:
            run_task(conn, "goodreads_import", upload(store, warm_text), OWNER, proc)
            copy_rows(url, warm_books)
            clear(conn)
            idle_kb = proc.memory_kb("VmHWM")
            for _ in range(mode.reps):
                copies.append(copy_rows(url, books))
                clear(conn)
                data = upload(store, text)
                runs.append(run_task(conn, "goodreads_import", data, OWNER, proc))
                imported = conn.execute("SELECT count(*) FROM books").fetchone()[0]  # type: ignore[index]
                if imported != n:
                    raise RuntimeError(f"the import loaded {imported} of {n} books")
                clear(conn)
                loops.append(row_by_row(url, books[: mode.one_by_one_rows]))
                clear(conn)
            grown_mb = (proc.memory_kb("VmHWM") - idle_kb) * 1024 / 1e6
    ours, copy_s = harness.median(runs), harness.median(copies)
    loop_s = harness.median(loops) * n / mode.one_by_one_rows
    got = harness.ratio(ours, copy_s)
    result.add(
        Row(
            f"goodreads_import of {n:,} rows",
            round(ours, 3),
            "s",
            round(copy_s, 3),
            "COPY of the parsed rows",
            got,
            target=f"≤ {TARGET}x",
            met=got is not None and got <= TARGET,
        )
    )
    result.add(
        Row(
            f"goodreads_import of {n:,} rows vs row-by-row commits",
            round(ours, 3),
            "s",
            round(loop_s, 3),
            "INSERT + COMMIT per row",
            harness.ratio(ours, loop_s),
            note=f"loop timed on {mode.one_by_one_rows:,} rows, scaled to {n:,}",
        )
    )
    grown_ratio = harness.ratio(grown_mb, file_mb)
    result.add(
        Row(
            "listener peak RSS growth during the import, vs the file's size",
            round(grown_mb, 1),
            "MB",
            round(file_mb, 1),
            "MB of the file",
            grown_ratio,
            target=f"≤ {RSS_TARGET}x",
            met=grown_ratio is not None and grown_ratio <= RSS_TARGET,
            note=f"idle peak RSS (after a 50-row import) {idle_kb * 1024 / 1e6:.1f} MB",
        )
    )
    result.details = {
        "rows": n,
        "file_mb": round(file_mb, 2),
        "idle_peak_rss_mb": round(idle_kb * 1024 / 1e6, 1),
        "task_runs_s": [round(r, 3) for r in runs],
        "copy_runs_s": [round(r, 3) for r in copies],
        "row_by_row_runs_s": [round(r, 3) for r in loops],
        "row_by_row_rows": mode.one_by_one_rows,
    }
    result.note = (
        f"median of {mode.reps} reps; each rep starts from empty books, notes and "
        "reading_sessions tables"
    )
    return result
