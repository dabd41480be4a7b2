"""Group commit: quick tasks and exports share one transaction; one failure spares the rest."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import Conn, connect
from booklogr_tasks.worker.finisher import Finished, Finisher, _Pending
from booklogr_tasks.worker.lease import Lease

from tests.helpers import insert_task, task_row

WORKER = "finisher-test"


def claimed(db_url: str, count: int) -> list[int]:
    """Claim `count` new tasks for WORKER: their first attempt (attempts = 1)."""
    with connect(db_url, autocommit=True) as conn:
        ids = [insert_task(conn, "csv_export", {"owner_id": 3}, 3) for _ in range(count)]
        claimed = tasks.claim_batch(conn, WORKER, ["csv_export"], count)
    assert sorted(t.id for t in claimed) == sorted(ids)
    return ids


def finish_group(
    db_url: str, submissions: list[tuple[int, Any]], *, worker: str = WORKER
) -> dict[int, Finished]:
    """Submit the tasks to one finisher and collect what became of each."""
    outcome: dict[int, Finished] = {}
    all_done = threading.Event()

    def done_for(task_id: int) -> Any:
        def done(finished: Finished) -> None:
            outcome[task_id] = finished
            if len(outcome) == len(submissions):
                all_done.set()

        return done

    finisher = Finisher(db_url, worker)
    try:
        for task_id, publish in submissions:
            finisher.submit(Lease(task_id, 1), {"n": task_id}, publish, done_for(task_id))
        assert all_done.wait(30)
    finally:
        finisher.close()
    return outcome


def test_a_failed_publish_fails_only_its_own_task(db_url: str, conn: Any) -> None:
    plain, good, bad = claimed(db_url, 3)

    def publish_good(c: Conn) -> None:
        c.execute(
            "INSERT INTO csv_export (filename, owner_id, task_id) VALUES ('g', 3, %s)", (good,)
        )

    def publish_bad(c: Conn) -> None:
        c.execute(
            "INSERT INTO csv_export (filename, owner_id, task_id) VALUES ('b', 3, %s)", (bad,)
        )
        raise RuntimeError("disk on fire")

    outcome = finish_group(db_url, [(plain, None), (good, publish_good), (bad, publish_bad)])

    assert outcome[plain] == "success" and outcome[good] == "success"
    assert isinstance(outcome[bad], RuntimeError)
    assert task_row(conn, plain)["status"] == "success"
    assert task_row(conn, good)["status"] == "success"
    # The failed task is untouched (still started, its row rolled back): the runner records why.
    assert task_row(conn, bad)["status"] == "started"
    rows = conn.execute("SELECT filename, task_id FROM csv_export ORDER BY filename").fetchall()
    assert [(r["filename"], r["task_id"]) for r in rows] == [("g", good)]
    results = conn.execute("SELECT task_id, result FROM task_results ORDER BY task_id").fetchall()
    assert [(r["task_id"], r["result"]) for r in results] == [
        (plain, {"n": plain}),
        (good, {"n": good}),
    ]


def test_a_publish_the_database_refuses_fails_only_its_own_task(db_url: str, conn: Any) -> None:
    """The group is first sent as one pipeline; an error the server raises in it (not in
    Python) must also fall back to one savepoint per task."""
    good, bad, after = claimed(db_url, 3)

    def publish_row(task_id: int, filename: str) -> Any:
        def publish(c: Conn) -> None:
            c.execute(
                "INSERT INTO csv_export (filename, owner_id, task_id) VALUES (%s, 3, %s)",
                (filename, task_id),
            )

        return publish

    def publish_refused(c: Conn) -> None:
        c.execute("SELECT 1 / 0")

    outcome = finish_group(
        db_url,
        [(good, publish_row(good, "g")), (bad, publish_refused), (after, publish_row(after, "a"))],
    )

    assert outcome[good] == "success" and outcome[after] == "success"
    assert type(outcome[bad]).__name__ == "DivisionByZero"
    assert [task_row(conn, t)["status"] for t in (good, bad, after)] == [
        "success",
        "started",
        "success",
    ]
    rows = conn.execute("SELECT filename FROM csv_export ORDER BY filename").fetchall()
    assert [r["filename"] for r in rows] == ["a", "g"]


def test_a_task_taken_away_is_reported_lost_and_publishes_nothing(db_url: str, conn: Any) -> None:
    (task_id,) = claimed(db_url, 1)
    conn.execute("UPDATE tasks SET worker = 'someone-else' WHERE id = %s", (task_id,))
    published: list[int] = []

    outcome = finish_group(db_url, [(task_id, lambda c: published.append(task_id))])

    assert outcome == {task_id: "lost"}
    assert published == []
    assert task_row(conn, task_id)["status"] == "started"


@pytest.mark.parametrize("count", [1, 50])
def test_every_submitted_task_is_recorded_once(db_url: str, conn: Any, count: int) -> None:
    ids = claimed(db_url, count)

    outcome = finish_group(db_url, [(task_id, None) for task_id in ids])

    assert outcome == dict.fromkeys(ids, "success")
    done = conn.execute("SELECT count(*) AS n FROM tasks WHERE status = 'success'").fetchone()
    assert done["n"] == count


def test_two_attempts_of_one_task_in_one_group_publish_once(db_url: str, conn: Any) -> None:
    """A submission twice over, and one of an attempt that does not own the task: one publish,
    one success, the others lost."""
    (task_id,) = claimed(db_url, 1)
    published: list[str] = []

    def publish_as(name: str) -> Any:
        def publish(c: Conn) -> None:
            published.append(name)

        return publish

    finisher = Finisher(db_url, WORKER)
    try:
        group = [
            _Pending(Lease(task_id, 1), {"attempt": 1}, publish_as("first"), lambda f: None),
            _Pending(Lease(task_id, 1), {"attempt": 1}, publish_as("again"), lambda f: None),
            _Pending(Lease(task_id, 2), {"attempt": 2}, publish_as("later"), lambda f: None),
        ]
        with connect(db_url) as c:
            outcome = finisher._finish(c, group)
    finally:
        finisher.close()

    assert outcome == ["success", "lost", "lost"]
    assert published == ["first"]
    assert task_row(conn, task_id)["status"] == "success"
