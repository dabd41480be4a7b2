"""The API's autocommit connections and the one-statement create under the per-user cap."""

from __future__ import annotations

from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import get_pool, live_connection, pooled


def test_autocommit_and_transaction_connections_never_share_a_pool(db_url: str) -> None:
    get_pool(db_url, max_size=1)  # one connection each: a block gets the same one back
    get_pool(db_url, max_size=1, autocommit=True)
    for _ in range(2):
        with live_connection(db_url, 1.0, 5.0, autocommit=True) as conn:
            assert conn.autocommit
            conn.execute("SELECT 1")
            api_pid = conn.info.backend_pid
        with pooled(db_url) as again:
            assert not again.autocommit
            assert again.info.backend_pid != api_pid
            again.execute("CREATE TABLE rolled_back (x int)")
            again.rollback()  # a transaction, so nothing stays
            exists = again.execute("SELECT to_regclass('rolled_back') IS NOT NULL AS e").fetchone()
            assert exists == {"e": False}
    with live_connection(db_url, 1.0, 5.0, autocommit=True) as conn:
        assert conn.info.backend_pid == api_pid  # the autocommit pool's one connection


def test_a_create_under_the_cap_is_committed_at_once_and_refused_past_it(db_url: str) -> None:
    with live_connection(db_url, 1.0, 5.0, autocommit=True) as conn:
        made = [
            tasks.create_task_under_cap(conn, "csv_export", '{"owner_id": 7}', 7, cap=2)
            for _ in range(3)
        ]
    assert [t is not None for t in made] == [True, True, False]
    # Seen from another connection: both committed, the third stored nothing.
    with pooled(db_url) as other:
        rows = other.execute("SELECT status FROM tasks WHERE created_by = 7").fetchall()
    assert rows == [{"status": "fresh"}, {"status": "fresh"}]
