"""`booklogr-tasks queue`: counts per type and status, and the oldest waiting, running, failed."""

from __future__ import annotations

from typing import TextIO

from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import connect


def print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def print_queue(database_url: str, out: TextIO) -> None:
    with connect(database_url) as conn:
        counts = tasks.queue_counts(conn)
        rows = [["type", "status", "count", "oldest created"]]
        rows += [
            [c["type"], c["status"], str(c["n"]), f"{c['oldest']:%Y-%m-%d %H:%M:%S}"]
            for c in counts
        ]
        if len(rows) == 1:
            out.write("no tasks\n")
            return
        print_table(rows, out)
        for status, title in (("fresh", "waiting"), ("started", "running"), ("failure", "failed")):
            oldest = tasks.oldest_tasks(conn, status)
            if not oldest:
                continue
            out.write(f"\noldest {title}:\n")
            detail = [["id", "type", "user", "attempts", "worker", "updated", "error"]]
            detail += [
                [
                    str(t.id),
                    t.type,
                    str(t.created_by),
                    str(t.attempts),
                    t.worker or "",
                    f"{t.updated_on:%H:%M:%S}" if t.updated_on else "",
                    (t.error or "")[:60],
                ]
                for t in oldest
            ]
            print_table(detail, out)
