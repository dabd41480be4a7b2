"""`booklogr-tasks dev --demo`: a demo user's library and a curl walk-through to export it.

The library is deliberately awkward — commas, quotes, newlines, non-Latin scripts, emoji and
cells a spreadsheet would run as formulas — so a first export already shows the CSV holding up.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import jwt

from booklogr_tasks.db.pool import connect

# BookLogr's first user, and the user every request is in single-user mode.
DEMO_USER_ID = 1
TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600

_TITLES = [
    "The Left Hand of Darkness",
    'Commas, "quotes", and more',
    "Two lines\nin one title",
    "Ünïcödé — 日本語の本 📚",
    '=HYPERLINK("http://example.com","click")',
    "+44 ways to read",
    "-1 is a number",
    "@mention the author",
    "\tTabbed in",
    "\rCarriage return first",
    "'Already quoted",
    "Trailing space ",
]
_AUTHORS = ["Ursula K. Le Guin", "Ann Leckie", '=cmd|" /C calc"!A0', "Октавия Батлер"]
_STATUSES = ["Read", "Currently reading", "To be read", "Did not finish"]
_NOTES = [
    'Loved this line: "to light a candle is to cast a shadow"',
    "A note, with commas, and\na second line",
    "=1+1 should stay text",
    "Zitat: „Gänsefüßchen“ ✓",
]
# Three editions of each title: a few dozen books in all.
EDITIONS = 3


def _demo_books() -> list[dict[str, Any]]:
    books = []
    for edition in range(EDITIONS):
        for i, title in enumerate(_TITLES):
            n = edition * len(_TITLES) + i
            books.append(
                {
                    "title": title if edition == 0 else f"{title} (edition {edition + 1})",
                    "isbn": f"978{n:010d}",
                    "description": None if n % 4 == 0 else f"Book {n}: a story, told\nin parts",
                    "author": _AUTHORS[n % len(_AUTHORS)],
                    "reading_status": _STATUSES[n % len(_STATUSES)],
                    "current_page": n * 7,
                    "total_pages": 200 + n * 10,
                    "rating": None if n % 5 == 0 else round(1 + (n % 9) / 2, 2),
                    "owner_id": DEMO_USER_ID,
                    "notes": _NOTES[: n % (len(_NOTES) + 1)],
                }
            )
    return books


def seed_demo_library(database_url: str) -> int:
    """Give the demo user their library, unless they already have books; return books added."""
    books = _demo_books()
    with connect(database_url) as conn, conn.transaction():
        # One seeding at a time, so two `dev --demo` started together add one library.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('booklogr-tasks demo'))")
        row = conn.execute(
            "SELECT count(*) AS n FROM books WHERE owner_id = %s", (DEMO_USER_ID,)
        ).fetchone()
        if row and row["n"]:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO books (title, isbn, description, author, reading_status,
                                      current_page, total_pages, rating, owner_id)
                   VALUES (%(title)s, %(isbn)s, %(description)s, %(author)s,
                           %(reading_status)s, %(current_page)s, %(total_pages)s, %(rating)s,
                           %(owner_id)s)
                   RETURNING id""",
                books,
                returning=True,
            )
            ids = []
            while True:
                fetched = cur.fetchone()
                if fetched is not None:
                    ids.append(fetched["id"])
                if not cur.nextset():
                    break
            cur.executemany(
                "INSERT INTO notes (book_id, content, quote_page) VALUES (%s, %s, %s)",
                [
                    (book_id, note, page)
                    for book_id, book in zip(ids, books, strict=True)
                    for page, note in enumerate(book["notes"], start=1)
                ],
            )
    return len(books)


def demo_token(secret: str, user_id: int = DEMO_USER_ID) -> str:
    """A token like the ones BookLogr issues: HS256, user id in claim `id`."""
    now = int(time.time())
    claims = {"id": user_id, "iat": now, "exp": now + TOKEN_LIFETIME_SECONDS}
    return jwt.encode(claims, secret, algorithm="HS256")


def curl_walkthrough(base_url: str, token: str | None) -> str:
    """Shell lines that create a CSV export, wait for it and download it."""
    auth = '-H "Authorization: Bearer $TOKEN" ' if token else ""
    task_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"task_id\"])'"
    download = 'python3 -c \'import json,sys; print(json.load(sys.stdin)["result"]["download"])\''
    body = """'{"type": "csv_export", "data": {}}'"""
    lines = [
        f"BASE={shlex.quote(base_url)}",
        *([f"TOKEN={shlex.quote(token)}"] if token else []),
        "# 1. ask for a CSV export of the demo library",
        f'TASK=$(curl -fsS -X POST "$BASE/v1/tasks" {auth}'
        f"-H 'Content-Type: application/json' -d {body} | {task_id})",
        "# 2. poll until it has finished",
        f'until curl -fsS "$BASE/v1/tasks/$TASK" {auth}'
        """| grep -Eq '"status": ?"(success|failure)"'; do sleep 1; done""",
        f'curl -fsS "$BASE/v1/tasks/$TASK" {auth}; echo',
        "# 3. download the file",
        f'DOWNLOAD=$(curl -fsS "$BASE/v1/tasks/$TASK" {auth}| {download})',
        f'curl -fsS -L "$BASE$DOWNLOAD" {auth}-o booklogr-export.csv',
        "head -5 booklogr-export.csv",
    ]
    return "\n".join(lines)
