"""Test helpers: finding a PostgreSQL, starting service processes, seeding books, waiting."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.rows
from booklogr_tasks.db.pool import close_pools
from psycopg.conninfo import conninfo_to_dict, make_conninfo

T = TypeVar("T")

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


EMBEDDED_TEST_DATA = Path(".booklogr-tasks/test-pgdata")


def server_choice() -> tuple[str | None, str]:
    """The server URL the tests will use (None: an embedded one) and where it came from."""
    for variable in ("TEST_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(variable):
            return os.environ[variable], f"from {variable}"
    if _answers("127.0.0.1", 5432):
        return LOCAL_SERVER, "something answers on 127.0.0.1:5432"
    return None, f"embedded PostgreSQL in {EMBEDDED_TEST_DATA}, started for this run"


def describe_server() -> str:
    """One line for the test report: which PostgreSQL the tests create their databases on."""
    from booklogr_tasks.devtools.dev import redacted

    url, why = server_choice()
    return f"database: {redacted(url)} ({why})" if url else f"database: {why}"


@contextmanager
def server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server the tests may create databases on."""
    url, _ = server_choice()
    if url:
        yield url
    else:
        from booklogr_tasks.devtools.embedded import embedded_server

        with embedded_server(EMBEDDED_TEST_DATA) as embedded_url:
            yield embedded_url


def with_db(url: str, dbname: str) -> str:
    """`url` naming another database on the same server."""
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": dbname})


@contextmanager
def throwaway_database(server: str, template: str | None = None) -> Iterator[str]:
    """The URL of a new database on `server` (a copy of `template` when given), dropped
    afterwards with whatever still connects to it, also when the block fails."""
    name = f"bt_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_db(server, name)
    finally:
        close_pools()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until(
    check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """A `booklogr-tasks` subcommand as a real process, stopped (hard if need be) on exit."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "booklogr_tasks.cli", *args],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.terminate(15)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill()
            self._log.close()


@contextmanager
def service(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(args, env, log_path, cwd)
    try:
        yield proc
    finally:
        proc.close()


# --- data ------------------------------------------------------------------------------------

AWKWARD_TITLES = [
    "Plain title",
    'Commas, "quotes" and\nnewlines',
    "Ünïcödé — 日本語の本 📚",
    '=HYPERLINK("http://evil")',
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\tTabbed",
    "\rCarriage",
    "'=already quoted",
    "''+twice",
    "'plain apostrophe",
    "Trailing space ",
    "",
]


def seed_books(
    conn: psycopg.Connection[Any],
    owner_id: int,
    count: int | None = None,
    with_notes: bool = True,
) -> list[dict[str, Any]]:
    """Insert books (awkward text first) and notes; return them as the CSV export reads them."""
    titles = AWKWARD_TITLES if count is None else [f"Book {i}" for i in range(count)]
    books = []
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        for i, title in enumerate(titles):
            row = {
                "title": title,
                "isbn": f"97800000{i:05d}",
                "description": f'Description {i}, with "quotes"\nand lines' if i % 2 else None,
                "reading_status": ["Read", "Currently reading", "To be read", "Did not finish"][
                    i % 4
                ],
                "current_page": i * 3,
                "total_pages": 300 + i,
                "author": "Anne Author" if i % 3 else "=cmd|' /C calc'!A0",
                "rating": None if i % 5 == 0 else f"{(i % 5) + 0.25:.2f}",
            }
            cur.execute(
                """INSERT INTO books (title, isbn, description, reading_status, current_page,
                                      total_pages, author, rating, owner_id)
                   VALUES (%(title)s, %(isbn)s, %(description)s, %(reading_status)s,
                           %(current_page)s, %(total_pages)s, %(author)s, %(rating)s, %(owner)s)
                   RETURNING id""",
                {**row, "owner": owner_id},
            )
            book_id = cur.fetchone()[0]  # type: ignore[index]
            notes = []
            if with_notes and i % 2 == 0:
                for content in ('a note, with "quotes"', "second\nnote ✓"):
                    cur.execute(
                        "INSERT INTO notes (book_id, content, quote_page) VALUES (%s, %s, %s)",
                        (book_id, content, i),
                    )
                    notes.append(content)
            books.append({**row, "id": book_id, "notes": notes})
    if not conn.autocommit:
        conn.commit()
    return books


def insert_task(
    conn: psycopg.Connection[Any], task_type: str, data: dict[str, Any] | str, created_by: int
) -> int:
    """Insert a task the way any other program would: plain SQL (the trigger notifies)."""
    payload = data if isinstance(data, str) else json.dumps(data)
    row = conn.execute(
        "INSERT INTO tasks (type, data, created_by) VALUES (%s, %s, %s) RETURNING id",
        (task_type, payload, created_by),
    ).fetchone()
    assert row is not None
    return int(row["id"] if isinstance(row, dict) else row[0])


def task_row(conn: psycopg.Connection[Any], task_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None
    return row


def library_of(
    conn: psycopg.Connection[Any], owner_id: int, with_ids: bool = True
) -> list[dict[str, Any]]:
    """The owner's books as stored, oldest first, each with its notes (oldest first)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        books = cur.execute(
            """SELECT id, title, subtitle, isbn, author, description, reading_status,
                      current_page, total_pages, rating, created_on
                 FROM books WHERE owner_id = %s ORDER BY id""",
            (owner_id,),
        ).fetchall()
        for book in books:
            book["notes"] = cur.execute(
                """SELECT content, quote_page, visibility, created_on FROM notes
                    WHERE book_id = %s ORDER BY id""",
                (book["id"] if with_ids else book.pop("id"),),
            ).fetchall()
    return books


def insert_tasks(conn: psycopg.Connection[Any], task_type: str, owner_id: int, count: int) -> None:
    """A burst of tasks in one statement (the trigger notifies for each)."""
    conn.execute(
        "INSERT INTO tasks (type, data, created_by) "
        "SELECT %s, json_build_object('owner_id', %s)::text, %s FROM generate_series(1, %s)",
        (task_type, owner_id, owner_id, count),
    )


def count_with_status(conn: psycopg.Connection[Any], status: str) -> int:
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute("SELECT count(*) FROM tasks WHERE status = %s", (status,)).fetchone()
    assert row is not None
    return int(row[0])
