"""`booklogr-tasks schedules` as a user runs it: every schedule with its next run."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "booklogr_tasks.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_schedules_lists_every_schedule_soonest_first(env: dict[str, str], conn: Any) -> None:
    conn.execute(
        """INSERT INTO export_schedules (owner_id, format, every, keep, next_run_at)
           VALUES (5, 'backup', 'week', 4, '2031-01-02 03:04:05+00'),
                  (6, 'csv', 'day', 1, '2030-06-07 08:09:10+00')"""
    )
    lines = _run(["schedules"], env).splitlines()
    assert lines[0].split() == ["user", "format", "every", "keep", "next", "run", "(UTC)"]
    assert lines[2].split() == ["6", "csv", "day", "1", "2030-06-07", "08:09:10"]
    assert lines[3].split() == ["5", "backup", "week", "4", "2031-01-02", "03:04:05"]


def test_schedules_of_an_empty_database(env: dict[str, str]) -> None:
    assert _run(["schedules"], env) == "no schedules\n"
