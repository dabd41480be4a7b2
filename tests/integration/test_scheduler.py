"""The scheduler: each due schedule yields exactly one export task per period (however many
schedulers run), one catch-up run after a long gap, a run that waits for room under the cap,
and keep-N deleting only a schedule's own older exports."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.worker.runner import Runner
from booklogr_tasks.worker.scheduler import run_schedules

from tests.helpers import insert_task, seed_books, service, task_row, wait_until


def _schedule(conn: Any, owner: int, fmt: str, every: str, keep: int, due_in: str) -> int:
    row = conn.execute(
        "INSERT INTO export_schedules (owner_id, format, every, keep, next_run_at) "
        "VALUES (%s, %s, %s, %s, now() + %s::interval) RETURNING id",
        (owner, fmt, every, keep, due_in),
    ).fetchone()
    return int(row["id"])


def _tasks(conn: Any, owner: int | None = None) -> list[dict[str, Any]]:
    where = "" if owner is None else f"WHERE created_by = {int(owner)}"
    return conn.execute(
        f"SELECT id, type, data, created_by FROM tasks {where} ORDER BY id"
    ).fetchall()


def _next_run(conn: Any, schedule_id: int) -> Any:
    return conn.execute(
        "SELECT next_run_at - now() AS ahead FROM export_schedules WHERE id = %s", (schedule_id,)
    ).fetchone()["ahead"]


def test_a_due_schedule_yields_one_ordinary_task_of_its_user(settings: Settings, conn: Any) -> None:
    due = _schedule(conn, 5, "csv", "week", 3, "-1 second")
    _schedule(conn, 6, "json", "day", 3, "1 hour")  # not due
    run = run_schedules(settings)
    assert [t.type for t in run.created] == ["csv_export"]
    assert run_schedules(settings).created == []
    (task,) = _tasks(conn)
    assert task["created_by"] == 5 and json.loads(task["data"]) == {"owner_id": 5}
    # The next run is one period after the one that ran.
    assert timedelta(days=6, hours=23) < _next_run(conn, due) <= timedelta(days=7)


def test_a_schedule_missed_for_days_runs_once(settings: Settings, conn: Any) -> None:
    missed = _schedule(conn, 5, "html", "day", 3, "-5 days -1 hour")
    assert len(run_schedules(settings).created) == 1
    assert run_schedules(settings).created == []
    assert len(_tasks(conn)) == 1
    # It keeps its time of day: the next run is the next one after now, 23 hours away.
    assert timedelta(hours=22) < _next_run(conn, missed) < timedelta(hours=23, minutes=1)


def test_a_user_at_the_cap_waits_for_room_and_is_not_skipped(settings: Settings, conn: Any) -> None:
    cap = settings.max_pending_tasks_per_user
    for _ in range(cap):
        insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    waiting = _schedule(conn, 5, "json", "day", 3, "-1 second")
    run = run_schedules(settings)
    assert run.created == [] and run.waiting == 1
    assert _next_run(conn, waiting) < timedelta(0)  # still due
    conn.execute("UPDATE tasks SET status = 'success' WHERE id = (SELECT min(id) FROM tasks)")
    assert [t.type for t in run_schedules(settings).created] == ["json_export"]
    assert len(_tasks(conn, 5)) == cap + 1


def _exports(conn: Any, owner: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT task_id, filename FROM csv_export WHERE owner_id = %s ORDER BY id", (owner,)
    )
    return [(r["task_id"], r["filename"]) for r in rows]


def test_keep_n_deletes_only_the_schedules_older_exports(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=5, count=2)
    manual = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    assert Runner(settings, "w").run_by_id(manual) == "success"
    schedule = _schedule(conn, 5, "csv", "day", 2, "-1 second")
    scheduled = []
    for _ in range(4):
        conn.execute(
            "UPDATE export_schedules SET next_run_at = now() - interval '1 second' WHERE id = %s",
            (schedule,),
        )
        (task,) = run_schedules(settings).created
        assert Runner(settings, "w").run_by_id(task.id) == "success", task_row(conn, task.id)
        scheduled.append(task.id)
    kept = _exports(conn, 5)
    assert [task_id for task_id, _ in kept] == [manual, *scheduled[-2:]]
    files = conn.execute("SELECT filename FROM files WHERE owner_id = 5 ORDER BY id").fetchall()
    assert [f["filename"] for f in files] == [name for _, name in kept]
    on_disk = sorted(str(p.relative_to(export_folder)) for p in export_folder.rglob("*.csv"))
    assert on_disk == sorted(name for _, name in kept)


def test_three_listeners_make_one_task_per_due_schedule_within_seconds(
    env: dict[str, str], conn: Any, tmp_path: Path
) -> None:
    env = {**env, "SCHEDULE_TICK_SECONDS": "0.2"}
    seed_books(conn, owner_id=1, count=2)
    with (
        service(["listen", "--nickname", "a"], env, tmp_path / "a.log"),
        service(["listen", "--nickname", "b"], env, tmp_path / "b.log"),
        service(["listen", "--nickname", "c"], env, tmp_path / "c.log"),
    ):
        ids = [
            _schedule(conn, owner, fmt, "day", 3, "2 seconds")
            for owner in range(1, 11)
            for fmt in ("csv", "json")
        ]
        wait_until(lambda: len(_tasks(conn)) >= len(ids), timeout=30, what="20 scheduled tasks")
        wait_until(
            lambda: (
                conn.execute("SELECT count(*) AS n FROM tasks WHERE status = 'success'").fetchone()[
                    "n"
                ]
                == len(ids)
            ),
            timeout=60,
            what="the scheduled exports",
        )
        # A few more ticks of every scheduler: nothing more is due today.
        conn.execute("SELECT pg_sleep(1)")
    rows = conn.execute(
        """SELECT r.schedule_id, count(*) AS n, max(t.created_at - s.created_at) AS late
             FROM scheduled_exports r JOIN tasks t ON t.id = r.task_id
             JOIN export_schedules s ON s.id = r.schedule_id
            GROUP BY r.schedule_id"""
    ).fetchall()
    assert sorted(r["schedule_id"] for r in rows) == sorted(ids)
    assert all(r["n"] == 1 for r in rows)
    assert len(_tasks(conn)) == len(ids)
    # Created within 10 s of the schedule's time (2 s after the schedule itself).
    assert all(r["late"] < timedelta(seconds=12) for r in rows)


def test_retention_leaves_a_schedules_exports_to_its_keep(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    from booklogr_tasks.worker.maintenance import run_retention

    seed_books(conn, owner_id=5, count=1)
    schedule = _schedule(conn, 5, "csv", "day", 5, "-1 second")
    made = []
    for _ in range(3):
        conn.execute(
            "UPDATE export_schedules SET next_run_at = now() - interval '1 second' WHERE id = %s",
            (schedule,),
        )
        (task,) = run_schedules(settings).created
        assert Runner(settings, "w").run_by_id(task.id) == "success"
        made.append(task.id)
    manual = [insert_task(conn, "csv_export", {"owner_id": 5}, 5) for _ in range(2)]
    for task_id in manual:
        assert Runner(settings, "w").run_by_id(task_id) == "success"
    conn.execute("UPDATE exports SET created_at = now() - interval '30 days'")
    policy = settings.model_copy(update={"export_keep_per_format": 1, "export_max_age_days": 7.0})
    expired = run_retention(policy)
    assert expired is not None and len(expired.export_files) == 1  # the older manual one
    assert [task_id for task_id, _ in _exports(conn, 5)] == [*made, manual[1]]
