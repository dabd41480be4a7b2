"""An import's memory follows its file whatever its shape: a real listener reads hostile files
(one row of millions of cells, a header of millions of names), and its peak RSS, read from
/proc, grows by at most 4x the file; ten at once leave it far under 1 GB."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.models import UPLOADS

from tests.helpers import insert_task, service, task_row, wait_until

MB = 1024 * 1024
HEADER = "Title,Authors,ISBN/UID,Read Status,Star Rating\r\n"


def _kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, field
    return int(match[1]) * 1024


def _reset_peak(pid: int) -> int:
    """Make the process's peak RSS its current RSS (Linux: clear_refs 5); returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _kib(pid, "VmRSS")


def _upload(folder: Path, owner: int, body: bytes) -> str:
    key = f"{UPLOADS}/{owner}/{uuid.uuid4().hex}"
    path = folder / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return key


def _import(conn: Any, key: str) -> int:
    return insert_task(conn, "storygraph_import", {"owner_id": 5, "file": key}, 5)


def _finished(conn: Any, task_ids: list[int]) -> list[dict[str, Any]]:
    def rows() -> list[dict[str, Any]] | None:
        found = [task_row(conn, t) for t in task_ids]
        return found if all(r["status"] in ("success", "failure") for r in found) else None

    return wait_until(rows, timeout=120, what="the imports to finish")


ONE_ROW = HEADER + "x," * (15 * MB)  # one 30 MB row of 15 million cells
LONG_HEADER = "Title," + "c," * (10 * MB)  # a 20 MB header of 10 million names


@pytest.mark.slow
def test_hostile_files_cost_the_listener_a_bounded_memory(
    env: dict[str, str], conn: Any, export_folder: Path, tmp_path: Path
) -> None:
    with service(["listen", "--concurrency", "10"], env, tmp_path / "l.log") as listener:
        wait_until(lambda: "listening" in listener.log(), what="listener up")
        # A first import loads what every import needs; the peaks below are the files' own.
        warm = _import(conn, _upload(export_folder, 5, (HEADER + "Warm,A,,read,\r\n").encode()))
        assert _finished(conn, [warm])[0]["status"] == "success"

        for body, what in (
            (ONE_ROW, "row 2 "),
            (LONG_HEADER, "the header row"),
        ):
            data = body.encode()
            before = _reset_peak(listener.pid)
            (row,) = _finished(conn, [_import(conn, _upload(export_folder, 5, data))])
            growth = _kib(listener.pid, "VmHWM") - before
            assert row["status"] == "failure" and row["error"].startswith(what), row["error"]
            assert row["error"].endswith("nothing was imported")
            assert growth <= 4 * len(data), (what, growth, len(data))

        # Ten at once (10 MB one-row files): the listener stays far under 1 GB.
        _reset_peak(listener.pid)
        ten = [
            _import(conn, _upload(export_folder, 5, ONE_ROW[: 10 * MB].encode())) for _ in range(10)
        ]
        rows = _finished(conn, ten)
        assert all(r["status"] == "failure" for r in rows)
        assert _kib(listener.pid, "VmHWM") < 1024 * MB
    # Nothing of the hostile files was imported.
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 1
