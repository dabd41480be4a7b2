"""`booklogr-tasks schedules`: every user's export schedules, soonest next run first."""

from __future__ import annotations

from datetime import UTC
from typing import TextIO

from booklogr_tasks.cli.queue import print_table
from booklogr_tasks.db import schedules
from booklogr_tasks.db.pool import connect


def print_schedules(database_url: str, out: TextIO) -> None:
    with connect(database_url) as conn:
        found = schedules.list_all(conn)
    if not found:
        out.write("no schedules\n")
        return
    rows = [["user", "format", "every", "keep", "next run (UTC)"]]
    rows += [
        [
            str(s.owner_id),
            s.format,
            s.every,
            str(s.keep),
            f"{s.next_run_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
        ]
        for s in found
    ]
    print_table(rows, out)
