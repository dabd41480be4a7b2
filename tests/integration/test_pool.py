"""The API's autocommit connections and the one-statement create under the per-user cap."""

from __future__ import annotations

from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import get_pool, live_connection, pooled


def test_an_autocommit_connection_goes_back_to_the_pool_in_transaction_mode(db_url: str) -> None:
    get_pool(db_url, max_size=1)  # one connection: the block below gets the same one back
    with live_connection(db_url, 1.0, 5.0, autocommit=True) as conn:
        assert conn.autocommit
        first = conn.info.backend_pid
    with pooled(db_url) as again:
        assert again.info.backend_pid == first
        assert not again.autocommit
        again.execute("CREATE TABLE rolled_back (x int)")
        again.rollback()  # a transaction, so nothing stays
        exists = again.execute("SELECT to_regclass('rolled_back') IS NOT NULL AS e").fetchone()
        assert exists == {"e": False}


def test_a_create_under_the_cap_is_committed_at_once_and_refused_past_it(db_url: str) -> None:
    with live_connection(db_url, 1.0, 5.0, autocommit=True) as conn:
        made = [tasks.create_task_under_cap(conn, "csv_export", "{}", 7, cap=2) for _ in range(3)]
    assert [t is not None for t in made] == [True, True, False]
    # Seen from another connection: both committed, the third stored nothing.
    with pooled(db_url) as other:
        rows = other.execute("SELECT status FROM tasks WHERE created_by = 7").fetchall()
    assert rows == [{"status": "fresh"}, {"status": "fresh"}]
