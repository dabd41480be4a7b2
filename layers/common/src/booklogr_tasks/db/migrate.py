"""Apply the numbered SQL files in schema/ once each, under an advisory lock.

Several processes (API, listeners, a compose one-shot) may start at once; the lock makes them take
turns, and the `booklogr_tasks_migrations` table makes a second run a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from booklogr_tasks.core.errors import SchemaOutOfDate
from booklogr_tasks.db.pool import Conn, connect

# An arbitrary constant shared by every process that migrates this schema.
MIGRATION_LOCK_ID = 0x626F6F6B6C6F67  # "booklog"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    files = resources.files("booklogr_tasks.db.schema")
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


LATEST_VERSION = max(m.version for m in available_migrations())


def _ensure_table(conn: Conn) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS booklogr_tasks_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def migrate(url: str) -> list[str]:
    """Apply what is missing; return the names of the files applied (empty when up to date)."""
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            _ensure_table(conn)
            done = {
                row["version"]
                for row in conn.execute("SELECT version FROM booklogr_tasks_migrations")
            }
            for migration in available_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO booklogr_tasks_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


def schema_version(conn: Conn) -> int:
    """The newest applied migration, 0 when none."""
    exists = conn.execute("SELECT to_regclass('booklogr_tasks_migrations') AS t").fetchone()
    if not exists or exists["t"] is None:
        return 0
    row = conn.execute("SELECT max(version) AS v FROM booklogr_tasks_migrations").fetchone()
    return int(row["v"]) if row and row["v"] is not None else 0


def check_schema(conn: Conn) -> None:
    version = schema_version(conn)
    if version < LATEST_VERSION:
        raise SchemaOutOfDate(
            f"database schema is at version {version}, this code needs {LATEST_VERSION}: "
            "run `booklogr-tasks migrate` against this DATABASE_URL"
        )
