"""The lifecycle functions against a real PostgreSQL: each guard does what it promises."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from booklogr_tasks.core.errors import TaskNotFound, TaskNotRetryable
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import connect

from tests.helpers import insert_task, task_row

TYPES = ["csv_export"]


def test_create_inserts_fresh_task_and_notifies_on_commit_only(db_url: str, conn: Any) -> None:
    with connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN task_created")
        with connect(db_url) as writer:
            task = tasks.create_task(writer, "csv_export", '{"owner_id": 7}', 7)
            assert list(listener.notifies(timeout=0.3)) == []  # not committed: nobody woken
            writer.commit()
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert payloads == [str(task.id)]
    row = task_row(conn, task.id)
    assert (row["status"], row["worker"], row["attempts"], row["created_by"]) == (
        "fresh",
        None,
        0,
        7,
    )
    assert row["created_at"] is not None and row["updated_on"] is None


def test_rolled_back_create_leaves_nothing(db_url: str, conn: Any) -> None:
    with connect(db_url) as writer:
        tasks.create_task(writer, "csv_export", '{"owner_id": 7}', 7)
        writer.rollback()
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_claim_sets_worker_and_attempts_and_only_once(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    claimed = tasks.claim_task(conn, task_id, "w1", TYPES)
    assert claimed is not None and claimed.status == "started" and claimed.worker == "w1"
    assert claimed.attempts == 1 and claimed.updated_on is not None
    assert tasks.claim_task(conn, task_id, "w2", TYPES) is None
    assert task_row(conn, task_id)["worker"] == "w1"


def test_claim_ignores_other_types(conn: Any) -> None:
    task_id = insert_task(conn, "goodreads_import", {"owner_id": 1}, 1)
    assert tasks.claim_task(conn, task_id, "w1", TYPES) is None
    assert tasks.claim_batch(conn, "w1", TYPES, 10) == []
    assert task_row(conn, task_id)["status"] == "fresh"


def test_concurrent_batch_claims_are_disjoint(db_url: str, conn: Any) -> None:
    ids = {insert_task(conn, "csv_export", {"owner_id": 1}, 1) for _ in range(200)}
    won: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        got: list[int] = []
        with connect(db_url, autocommit=True) as c:
            barrier.wait()
            while batch := tasks.claim_batch(c, name, TYPES, 7):
                got += [t.id for t in batch]
        won[name] = got

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [tid for got in won.values() for tid in got]
    assert sorted(every) == sorted(ids)  # each task claimed exactly once
    assert conn.execute("SELECT max(attempts) AS m FROM tasks").fetchone()["m"] == 1


def test_finish_and_fail_by_a_worker_that_lost_the_task_change_nothing(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    assert tasks.claim_task(conn, task_id, "old", TYPES)
    conn.execute("UPDATE tasks SET status = 'fresh', worker = NULL WHERE id = %s", (task_id,))
    assert tasks.claim_task(conn, task_id, "new", TYPES)
    before = task_row(conn, task_id)
    assert tasks.finish_task(conn, task_id, "old", {"x": 1}) is False
    assert tasks.fail_task(conn, task_id, "old", "boom") is False
    assert tasks.heartbeat(conn, "old", {task_id: 1}, {}) == set()
    assert task_row(conn, task_id) == before
    assert tasks.finish_task(conn, task_id, "new", {"x": 1}) is True
    assert tasks.get_task(conn, task_id).result == {"x": 1}
    assert tasks.fail_task(conn, task_id, "new", "late") is False  # finished is final
    assert task_row(conn, task_id)["status"] == "success"


def test_retry_only_from_failure_clears_error_and_announces(db_url: str, conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 3}, 3)
    with pytest.raises(TaskNotRetryable):
        tasks.retry_task(conn, task_id, 3, TYPES)
    tasks.claim_task(conn, task_id, "w", TYPES)
    with pytest.raises(TaskNotRetryable):
        tasks.retry_task(conn, task_id, 3, TYPES)
    tasks.fail_task(conn, task_id, "w", "disk full", {"partial": True})
    with pytest.raises(TaskNotFound):
        tasks.retry_task(conn, task_id, 4, TYPES)  # someone else's
    with connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN task_created")
        retried = tasks.retry_task(conn, task_id, 3, TYPES)
        assert [n.payload for n in listener.notifies(timeout=2, stop_after=1)] == [str(task_id)]
    assert (retried.status, retried.error, retried.worker, retried.attempts) == (
        "fresh",
        None,
        None,
        0,
    )
    assert tasks.get_task(conn, task_id).result is None


def test_get_task_is_scoped_to_owner(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 3}, 3)
    assert tasks.get_task(conn, task_id, 3).id == task_id
    with pytest.raises(TaskNotFound):
        tasks.get_task(conn, task_id, 4)


def test_list_tasks_newest_first_with_keyset_pages(conn: Any) -> None:
    ids = [insert_task(conn, "csv_export", {"owner_id": 3}, 3) for _ in range(5)]
    insert_task(conn, "csv_export", {"owner_id": 4}, 4)
    first = tasks.list_tasks(conn, 3, limit=2)
    second = tasks.list_tasks(conn, 3, limit=2, before=first[-1].id)
    rest = tasks.list_tasks(conn, 3, limit=10, before=second[-1].id)
    assert [t.id for t in first + second + rest] == sorted(ids, reverse=True)


def test_reap_requeues_then_fails_after_max_attempts(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    for attempt in (1, 2):
        assert tasks.claim_task(conn, task_id, f"w{attempt}", TYPES)
        conn.execute(
            "UPDATE tasks SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (task_id,)
        )
        assert tasks.reap(conn, 60, 2, TYPES).requeued == ([task_id] if attempt < 2 else [])
        conn.execute("UPDATE tasks SET run_after = NULL WHERE id = %s", (task_id,))
    row = task_row(conn, task_id)
    assert row["status"] == "failure" and row["attempts"] == 2
    assert "worker lost 2 times" in row["error"]
    assert "w2" not in row["error"]  # which worker is the log's business, not the user's


def test_reap_leaves_tasks_with_a_fresh_heartbeat(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    tasks.claim_task(conn, task_id, "w", TYPES)
    assert tasks.heartbeat(conn, "w", {task_id: 1}, {task_id: {"done": 5, "total": 10}}) == {
        task_id
    }
    assert tasks.reap(conn, 60, 3, TYPES).requeued == []
    assert tasks.get_task(conn, task_id).progress == {"done": 5, "total": 10}


def test_release_gives_the_task_back_without_counting_the_attempt(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    tasks.claim_task(conn, task_id, "w", TYPES)
    assert tasks.release_task(conn, task_id, "other") is False
    assert tasks.release_task(conn, task_id, "w") is True
    row = task_row(conn, task_id)
    assert (row["status"], row["worker"], row["attempts"]) == ("fresh", None, 0)


def test_status_check_constraint(conn: Any) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO tasks (type, data, created_by, status) "
            "VALUES ('csv_export', '{}', 1, 'done')"
        )


def test_claim_batch_never_claims_more_than_its_limit(conn: Any) -> None:
    # The plan that re-ran the LIMIT subquery per row appeared once statistics said that few
    # tasks were fresh: make that the case, then give it a backlog.
    for _ in range(5):
        insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    conn.execute("UPDATE tasks SET status = 'success'")
    conn.execute("VACUUM ANALYZE tasks")
    conn.execute(
        "INSERT INTO tasks (type, data, created_by) "
        "SELECT 'csv_export', '{\"owner_id\": 1}', 1 FROM generate_series(1, 500)"
    )
    assert len(tasks.claim_batch(conn, "w", TYPES, 10)) == 10
    assert (
        conn.execute("SELECT count(*) AS n FROM tasks WHERE status = 'started'").fetchone()["n"]
        == 10
    )


def _plan(conn: Any, statement: Any, params: dict[str, Any]) -> str:
    with conn.transaction(force_rollback=True):
        rows = conn.execute(b"EXPLAIN ANALYZE " + statement.encode(), params).fetchall()
    return "\n".join(row["QUERY PLAN"] for row in rows)


def _first_burst(conn: Any, fresh: int) -> None:
    """A new install's first burst: the planner has no statistics of the table yet."""
    conn.execute(
        "INSERT INTO tasks (type, data, created_by) "
        "SELECT 'csv_export', '{\"owner_id\": 1}', 1 FROM generate_series(1, %s)",
        (fresh,),
    )


def test_a_claim_walks_the_fresh_index_however_large_the_burst(db_url: str, conn: Any) -> None:
    # With these statistics the planner's default is a bitmap scan that reads and sorts every
    # fresh task to return ten: a claim's cost grew with the backlog.
    from booklogr_tasks.db import queries

    _first_burst(conn, 5000)
    params = {"worker": "w", "types": TYPES, "limit": 10}
    assert "Sort" in _plan(conn, queries.CLAIM_BATCH, params)  # what the claims connection avoids
    with tasks.claims_connection(db_url) as claims:
        plan = _plan(claims, queries.CLAIM_BATCH, params)
    assert "Index Scan using tasks_fresh_idx" in plan and "Sort" not in plan, plan


def test_statements_over_lists_of_ids_are_planned_for_the_table_as_it_is_now(
    db_url: str, conn: Any
) -> None:
    # A generic plan kept from when the table was small scanned it once per id of a group
    # commit: 70-840 ms per group once 10,000 tasks were queued. Such statements are never
    # prepared (each execution is planned); a claim by id, run as often, is.
    ids = [insert_task(conn, "csv_export", {"owner_id": 1}, 1) for _ in range(10)]
    with tasks.claims_connection(db_url) as claims:
        for task_id in ids:
            assert tasks.claim_task(claims, task_id, "w", TYPES) is not None
            owned = tasks.lock_owned(claims, "w", [(task_id, 1)])
            tasks.heartbeat(claims, "w", {task_id: 1}, {})
            assert tasks.finish_tasks(claims, "w", {task_id: None}, {task_id: 1}) == {task_id}
            assert owned == {(task_id, 1)}
        tasks.reap(claims, 60, 3, TYPES)
        tasks.claim_batch(claims, "w", TYPES, 10)
        prepared = [
            row["statement"]
            for row in claims.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        ]
        assert claims.execute("SHOW synchronous_commit").fetchone() == {"synchronous_commit": "off"}
    assert any("WHERE id = $" in statement for statement in prepared), prepared
    assert not any("unnest" in statement or "LIMIT" in statement for statement in prepared)
