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
        "owner_id": "YES",  # (+) whose task it is, decided at insert (schema 0012)
        "heartbeat_at": "YES",  # (+) the lease clock of a started task (schema 0013)
    }


def test_unmigrated_database_is_named_with_the_command_to_run(empty_db_url: str) -> None:
    with connect(empty_db_url) as conn, pytest.raises(SchemaOutOfDate) as err:
        check_schema(conn)
    assert "booklogr-tasks migrate" in str(err.value)
    assert str(LATEST_VERSION) in str(err.value)
