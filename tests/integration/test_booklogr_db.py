"""A database shaped like BookLogr v1.11's migrates, then runs an export and imports; every export
is listed in BookLogr's own `files` table, in the transaction of the task's success."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db import files
from booklogr_tasks.db.migrate import migrate
from booklogr_tasks.db.pool import connect
from booklogr_tasks.worker.maintenance import run_retention
from booklogr_tasks.worker.runner import Runner

from tests.helpers import insert_task, task_row

# BookLogr's tables, from its models' column lists (as SQLAlchemy creates them).
BOOKLOGR_SCHEMA = """
CREATE TABLE profiles (
    id serial PRIMARY KEY,
    display_name varchar UNIQUE,
    visibility varchar DEFAULT 'hidden',
    owner_id integer UNIQUE,
    profile_picture varchar
);
CREATE TABLE books (
    id serial PRIMARY KEY,
    title varchar, subtitle varchar, isbn varchar, description varchar, author varchar,
    reading_status varchar, current_page integer, total_pages integer,
    rating numeric(3, 2),
    owner_id integer REFERENCES profiles (owner_id),
    created_on timestamp
);
CREATE TABLE notes (
    id serial PRIMARY KEY,
    book_id integer REFERENCES books (id),
    content varchar NOT NULL,
    quote_page integer,
    visibility varchar DEFAULT 'hidden',
    created_on timestamp
);
CREATE TABLE tasks (
    id serial PRIMARY KEY,
    type varchar, data varchar, status varchar DEFAULT 'fresh', worker varchar,
    created_on timestamp, updated_on timestamp, created_by integer
);
CREATE TABLE files (
    id serial PRIMARY KEY, filename varchar, owner_id integer, created_at timestamp
);
CREATE TABLE revoked_tokens (id serial PRIMARY KEY, jti varchar(120));

INSERT INTO profiles (display_name, owner_id) VALUES ('reader', 1), ('user2', 3);
INSERT INTO books (title, isbn, author, reading_status, current_page, total_pages, rating,
                   owner_id, created_on)
VALUES ('Dune', '9780441172719', 'Frank Herbert', 'Read', 412, 412, 4.50, 1,
        '2024-01-02 03:04:05'),
       ('Emma', '9780141439587', 'Jane Austen', 'To be read', 0, 474, NULL, 1,
        '2024-02-03 04:05:06');
INSERT INTO notes (book_id, content, quote_page, visibility, created_on)
VALUES (1, 'Fear is the mind-killer.', 8, 'public', '2024-01-05 06:07:08');
INSERT INTO tasks (type, data, status, worker, created_on, updated_on, created_by)
VALUES ('csv_export', '{"owner_id": 1}', 'success', 'csv_export:abc', '2024-03-01 10:00:00',
        '2024-03-01 10:00:05', 1),
       (NULL, NULL, NULL, NULL, NULL, NULL, NULL),
       ('share_book_event', '{}', 'weird', NULL, '2024-03-02 10:00:00', NULL, 1);
INSERT INTO files (filename, owner_id, created_at) VALUES ('export_240301_abc.csv', 1, now());
"""
BOOKLOGR_TABLES = ("profiles", "books", "notes", "files", "revoked_tokens")


@pytest.fixture
def booklogr_settings(
    empty_db_url: str, export_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    with connect(empty_db_url, autocommit=True) as conn:
        conn.execute(BOOKLOGR_SCHEMA.encode())
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    monkeypatch.setenv("EXPORT_FOLDER", str(export_folder))
    monkeypatch.delenv("EXPORT_BUCKET", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _columns(conn: Any, tables: tuple[str, ...]) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT table_name, column_name, data_type, is_nullable, column_default
             FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name = ANY(%s)
            ORDER BY table_name, column_name""",
        (list(tables),),
    ).fetchall()


def _rows(conn: Any, table: str) -> list[dict[str, Any]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_booklogr_database_migrates_keeping_its_tables_and_rows(
    booklogr_settings: Settings,
) -> None:
    url = booklogr_settings.database_url
    with connect(url, autocommit=True) as conn:
        columns_before = _columns(conn, BOOKLOGR_TABLES)
        rows_before = {t: _rows(conn, t) for t in BOOKLOGR_TABLES}

    assert migrate(url)
    assert migrate(url) == []

    with connect(url, autocommit=True) as conn:
        assert _columns(conn, BOOKLOGR_TABLES) == columns_before
        assert {t: _rows(conn, t) for t in BOOKLOGR_TABLES} == rows_before
        old = _rows(conn, "tasks")
        assert [(t["id"], t["type"], t["status"], t["created_by"]) for t in old] == [
            (1, "csv_export", "success", 1),
            (2, "unknown", "failure", 0),
            (3, "share_book_event", "failure", 1),
        ]
        assert old[0]["created_on"] is not None  # BookLogr's own column is kept
        assert str(old[0]["created_at"]).startswith("2024-03-01 10:00:00")
        assert old[2]["error"] == "status unknown when migrated: weird"
        # New tasks get ids after BookLogr's, and a created_on BookLogr can show.
        new_id = insert_task(conn, "json_export", {"owner_id": 1}, 1)
        new = task_row(conn, new_id)
        assert new_id == 4 and new["status"] == "fresh" and new["created_on"] is not None


def test_booklogr_database_runs_an_export_and_imports(
    booklogr_settings: Settings, export_folder: Path
) -> None:
    url = booklogr_settings.database_url
    migrate(url)
    runner = Runner(booklogr_settings, "w")
    with connect(url, autocommit=True) as conn:
        export_id = insert_task(conn, "json_export", {"owner_id": 1}, 1)
        assert runner.run_by_id(export_id) == "success", task_row(conn, export_id)
        row = conn.execute("SELECT filename FROM json_export WHERE task_id = %s", (export_id,))
        exported = json.loads((export_folder / row.fetchone()["filename"]).read_text())
        assert [b["title"] for b in exported] == ["Dune", "Emma"]
        assert exported[0]["notes"][0]["content"] == "Fear is the mind-killer."

        # Owner 2 has no profile yet: the import creates it, as BookLogr's schema requires.
        csv_text = (
            "Title,Authors,ISBN/UID,Read Status,Star Rating\r\n"
            "Dune,Frank Herbert,9780441172719,read,4.5\r\n"
        )
        for owner in (1, 2, 2):  # owner 1 has the book already; 2 imports it once
            data = {"owner_id": owner, "csv": csv_text, "allow_duplicates": False}
            task_id = insert_task(conn, "storygraph_import", data, owner)
            assert runner.run_by_id(task_id) == "success", task_row(conn, task_id)

        profiles = conn.execute("SELECT owner_id, display_name FROM profiles ORDER BY id")
        # 'user2' is taken by owner 3, so owner 2's profile waits for a name of its own.
        assert profiles.fetchall() == [
            {"owner_id": 1, "display_name": "reader"},
            {"owner_id": 3, "display_name": "user2"},
            {"owner_id": 2, "display_name": None},
        ]
        owners = conn.execute("SELECT owner_id, count(*) AS n FROM books GROUP BY 1 ORDER BY 1")
        assert owners.fetchall() == [{"owner_id": 1, "n": 2}, {"owner_id": 2, "n": 1}]
        created = conn.execute("SELECT created_on FROM books WHERE owner_id = 2").fetchone()
        assert created["created_on"] is not None


def test_import_gives_a_new_owner_a_named_profile(booklogr_settings: Settings) -> None:
    url = booklogr_settings.database_url
    migrate(url)
    with connect(url, autocommit=True) as conn:
        text = (
            "title,isbn,description,reading_status,current_page,total_pages,author,rating,"
            'notes\r\nEmma,,,Read,1,2,Jane Austen,,"[{""content"": ""n""}]"\r\n'
        )
        data = {"owner_id": 5, "csv": text, "allow_duplicates": False}
        task_id = insert_task(conn, "booklogr_csv_import", data, 5)
        assert Runner(booklogr_settings, "w").run_by_id(task_id) == "success"
        profile = conn.execute("SELECT * FROM profiles WHERE owner_id = 5").fetchone()
        assert profile["display_name"] == "user5" and profile["visibility"] == "hidden"
        note = conn.execute("SELECT * FROM notes WHERE content = 'n'").fetchone()
        assert note["visibility"] == "hidden" and note["created_on"] is not None


def test_every_export_is_listed_in_booklogrs_files_table_the_booklogr_way(
    booklogr_settings: Settings, export_folder: Path
) -> None:
    url = booklogr_settings.database_url
    migrate(url)
    runner = Runner(booklogr_settings, "w")
    with connect(url, autocommit=True) as conn:
        task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
        assert runner.run_by_id(task_id) == "success", task_row(conn, task_id)
        export = conn.execute("SELECT * FROM csv_export WHERE task_id = %s", (task_id,)).fetchone()
        listed = conn.execute("SELECT * FROM files ORDER BY id").fetchall()

    # BookLogr's own row is untouched; the new one is what BookLogr's API itself would serve:
    # a bare name in the root of EXPORT_FOLDER, the owner, a naive UTC time.
    assert listed[0]["filename"] == "export_240301_abc.csv"
    row = listed[1]
    assert (row["filename"], row["owner_id"]) == (export["filename"], 1)
    assert re.fullmatch(rf"export_csv-{task_id}-{export['id']}-[0-9a-f]{{8}}\.csv", row["filename"])
    # BookLogr's own names (export_<YYMMDD>_<8 letters or digits>) never hold a "-".
    assert "/" not in row["filename"] and "-" in row["filename"]
    assert (export_folder / row["filename"]).read_text().startswith("title,isbn,")
    assert row["created_at"].tzinfo is None
    assert abs(row["created_at"].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def test_no_files_row_and_no_file_when_the_success_does_not_commit(
    booklogr_settings: Settings, export_folder: Path
) -> None:
    url = booklogr_settings.database_url
    migrate(url)

    with connect(url, autocommit=True) as conn:
        # The database refuses every new files row (rows already there are left alone).
        conn.execute("ALTER TABLE files ADD CONSTRAINT refused CHECK (false) NOT VALID")
        task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
        assert Runner(booklogr_settings, "w").run_by_id(task_id) == "failure"
        error = task_row(conn, task_id)["error"]
        assert "internal error" in error and "refused" not in error  # log only
        assert conn.execute("SELECT count(*) AS n FROM csv_export").fetchone()["n"] == 0
        names = [r["filename"] for r in conn.execute("SELECT filename FROM files").fetchall()]
    assert names == ["export_240301_abc.csv"]
    assert [p for p in export_folder.rglob("*") if p.is_file()] == []


def test_retention_takes_an_export_off_booklogrs_list_with_its_file(
    booklogr_settings: Settings, export_folder: Path
) -> None:
    url = booklogr_settings.database_url
    migrate(url)
    runner = Runner(booklogr_settings, "w")
    with connect(url, autocommit=True) as conn:
        made = [insert_task(conn, "html_export", {"owner_id": 1}, 1) for _ in range(2)]
        for task_id in made:
            assert runner.run_by_id(task_id) == "success"
        conn.execute(
            "UPDATE html_export SET created_at = now() - interval '30 days' WHERE task_id = %s",
            (made[0],),
        )
        policy = booklogr_settings.model_copy(
            update={"export_keep_per_format": 1, "export_max_age_days": 7.0}
        )
        expired = run_retention(policy)
        assert expired is not None and len(expired.export_files) == 1
        kept = conn.execute("SELECT filename FROM html_export").fetchone()["filename"]
        names = [r["filename"] for r in conn.execute("SELECT filename FROM files ORDER BY id")]
    assert names == ["export_240301_abc.csv", kept]
    assert sorted(p.name for p in export_folder.iterdir()) == [kept]


def test_migrate_indexes_booklogrs_revoked_tokens_for_the_per_request_lookup(
    booklogr_settings: Settings,
) -> None:
    migrate(booklogr_settings.database_url)
    with connect(booklogr_settings.database_url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'revoked_tokens'"
        ).fetchall()
        assert any("(jti)" in i["indexdef"] for i in indexes)
        conn.execute("INSERT INTO revoked_tokens (jti) VALUES ('a'), ('b')")
        assert files.token_revoked(conn, "b") and not files.token_revoked(conn, "c")
