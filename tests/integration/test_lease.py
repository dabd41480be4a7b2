"""Issue 35 §1: the lease is one concept (worker/lease.py), with a clock of its own.

`heartbeat_at` is the lease clock: the claim sets it, beats move it, the reaper reads it.
`updated_on` keeps the contract's meaning (claim, progress, finish).
"""

from __future__ import annotations

from typing import Any

import pytest
from booklogr_tasks.core.errors import TaskLost
from booklogr_tasks.db import tasks
from booklogr_tasks.worker.lease import Lease, Leases, LeaseState

from tests.helpers import insert_task, task_row

TYPES = ["csv_export"]


def test_the_claim_starts_the_lease_clock_and_a_beat_moves_only_it(conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    assert tasks.claim_task(conn, task_id, "w", TYPES)
    claimed = task_row(conn, task_id)
    assert claimed["heartbeat_at"] is not None and claimed["heartbeat_at"] == claimed["updated_on"]
    conn.execute("SELECT pg_sleep(0.01)")

    assert tasks.heartbeat(conn, "w", {task_id: 1}, {}) == {task_id}
    beaten = task_row(conn, task_id)
    assert beaten["heartbeat_at"] > claimed["heartbeat_at"]
    assert beaten["updated_on"] == claimed["updated_on"]  # no change a user would see

    assert tasks.heartbeat(conn, "w", {task_id: 1}, {task_id: {"done": 1, "total": 2}})
    progressed = task_row(conn, task_id)
    assert progressed["updated_on"] > claimed["updated_on"]  # progress is a change


def test_the_reaper_reads_the_lease_clock_not_updated_on(conn: Any) -> None:
    alive = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    lost = insert_task(conn, "csv_export", {"owner_id": 1}, 1)
    for task_id in (alive, lost):
        assert tasks.claim_task(conn, task_id, "w", TYPES)
    # `alive` has not changed for an hour but is beaten; `lost` changed just now but is not.
    conn.execute("UPDATE tasks SET updated_on = now() - interval '1 hour' WHERE id = %s", (alive,))
    conn.execute("UPDATE tasks SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (lost,))
    assert tasks.reap(conn, 60, 3, TYPES).requeued == [lost]
    assert task_row(conn, alive)["status"] == "started"


def test_a_lease_ends_with_its_block_unless_handed_over(db_url: str) -> None:
    leases = Leases(db_url, "w", interval=3600)
    try:
        with leases.hold(1, 1) as plain:
            assert plain.state is LeaseState.HELD and leases.running() == [plain]
        assert plain.state is LeaseState.ENDED and plain.ended and leases.running() == []

        with leases.hold(2, 1) as handed:
            handed.finishing()
            handed.hand_over()
        assert leases.running() == [handed] and not handed.ended  # the group commit's now
        handed.end()
        handed.end()  # twice is harmless
        assert handed.state is LeaseState.ENDED and leases.running() == []
    finally:
        leases.stop()


def test_a_newer_attempt_marks_the_older_lost_and_waits_for_it_to_end(db_url: str) -> None:
    leases = Leases(db_url, "w", interval=3600)
    try:
        older = leases.hold(7, 1)
        newer = leases.hold(7, 2)
        assert older.lost.is_set() and not newer.lost.is_set()
        assert newer.earlier == [older]
        older.end()
        assert newer.wait_for_earlier(patience=5) == [] and newer.earlier == []
        newer.end()
    finally:
        leases.stop()


def test_a_lease_lost_tells_its_job_at_the_next_check() -> None:
    lease = Lease(3, 1)
    lease.check()  # owned: nothing happens
    lease.stop_for_shutdown()
    with pytest.raises(TaskLost):
        lease.check()
    assert lease.shutting_down
