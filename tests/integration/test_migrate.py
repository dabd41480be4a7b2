from __future__ import annotations

import psycopg
import pytest
from booklogr_tasks.core.errors import SchemaOutOfDate
from booklogr_tasks.db.migrate import LATEST_VERSION, check_schema, migrate
from booklogr_tasks.db.pool import connect


def _schema_snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable, column_default
                 FROM information_schema.columns WHERE table_schema = 'public'
                ORDER BY table_name, column_name"""
        ).fetchall()


def test_migrate_twice_is_a_no_op(empty_db_url: str) -> None:
    first = migrate(empty_db_url)
    assert first and first[0].startswith("0001")
    snapshot = _schema_snapshot(empty_db_url)
    assert migrate(empty_db_url) == []
    assert _schema_snapshot(empty_db_url) == snapshot
    with connect(empty_db_url) as conn:
        check_schema(conn)


def test_tasks_table_has_the_contract_columns(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        cols = dict(
            conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'tasks'"
            ).fetchall()
        )
    assert cols == {
        "id": "NO",
        "type": "NO",
        "data": "NO",
        "status": "NO",
        "worker": "YES",
        "created_at": "NO",
        "updated_on": "YES",
        "created_by": "NO",
        "error": "YES",
        "attempts": "NO",
        "run_after": "YES",
    }


def test_unmigrated_database_is_named_with_the_command_to_run(empty_db_url: str) -> None:
    with connect(empty_db_url) as conn, pytest.raises(SchemaOutOfDate) as err:
        check_schema(conn)
    assert "booklogr-tasks migrate" in str(err.value)
    assert str(LATEST_VERSION) in str(err.value)


def test_per_format_export_tables_move_into_one_table_and_stay_readable(
    empty_db_url: str,
) -> None:
    """A database from before 0014 (one table per format) keeps every export, id and all, and
    its `<format>_export` names keep reading and writing them."""
    from booklogr_tasks.db.migrate import available_migrations

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE booklogr_tasks_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available_migrations():
            if m.version < 14:
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO booklogr_tasks_migrations (version, name) VALUES (%s, %s)",
                    (m.version, m.name),
                )
        conn.execute(
            "INSERT INTO csv_export (filename, owner_id) VALUES ('a.csv', 1), ('b.csv', 2)"
        )
        conn.execute("INSERT INTO goodreads_export (filename, owner_id) VALUES ('g.csv', 1)")

    assert migrate(empty_db_url)[0].startswith("0014")

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT format, id, filename, owner_id FROM exports ORDER BY format, id"
        ).fetchall()
        assert rows == [
            ("csv", 1, "a.csv", 1),
            ("csv", 2, "b.csv", 2),
            ("goodreads", 1, "g.csv", 1),
        ]
        assert conn.execute("SELECT filename FROM goodreads_export").fetchall() == [("g.csv",)]
        # Writes through the old names land in the one table, with ids past every moved one.
        (new_id,) = conn.execute(
            "INSERT INTO html_export (filename, owner_id) VALUES ('r.html', 3) RETURNING id"
        ).fetchone()
        assert new_id == 3
        assert conn.execute("SELECT format FROM exports WHERE id = 3").fetchall() == [("html",)]
        conn.execute("UPDATE csv_export SET filename = 'c.csv' WHERE id = 2")
        assert conn.execute(
            "SELECT filename FROM exports WHERE format = 'csv' AND id = 2"
        ).fetchone() == ("c.csv",)
