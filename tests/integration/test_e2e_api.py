"""End to end: `booklogr-tasks api` and `booklogr-tasks listen` as real processes on a real
database; a csv_export created over HTTP, polled to success and downloaded."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from booklogr_tasks.jobs.books import CSV_COLUMNS, unneutralise

from tests.api.support import bearer, free_port
from tests.helpers import seed_books, service, wait_until

pytestmark = pytest.mark.slow


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_create_poll_download_over_http(env: dict[str, str], conn: Any, tmp_path: Path) -> None:
    books = seed_books(conn, owner_id=5)
    seed_books(conn, owner_id=6, count=4)  # someone else's: must not be in the file
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        service(["api", "--port", str(port)], env, tmp_path / "api.log") as api,
        service(["listen"], env, tmp_path / "listen.log") as listener,
    ):
        wait_until(lambda: _answers(url), what=f"the API to answer\n{api.log()}")
        auth = bearer(5)

        created = requests.post(
            f"{url}/v1/tasks", json={"type": "csv_export", "data": {}}, headers=auth, timeout=10
        )
        assert created.status_code == 202, created.text
        location = created.headers["Location"]
        assert location == f"/v1/tasks/{created.json()['task_id']}"

        def finished() -> dict[str, Any] | None:
            task: dict[str, Any] = requests.get(f"{url}{location}", headers=auth, timeout=10).json()
            return task if task["status"] in ("success", "failure") else None

        task = wait_until(finished, what=f"the export to finish\n{listener.log()}")
        assert task["status"] == "success", task["error"]
        assert task["result"]["format"] == "csv"
        assert requests.get(f"{url}{location}", headers=bearer(6), timeout=10).status_code == 404

        listed = requests.get(f"{url}/v1/exports", headers=auth, timeout=10).json()["items"]
        assert [e["id"] for e in listed] == [task["result"]["export_id"]]

        download = requests.get(f"{url}{task['result']['download']}", headers=auth, timeout=10)
        assert download.status_code == 200
        assert download.headers["Content-Disposition"].startswith("attachment;")
        other = requests.get(f"{url}{task['result']['download']}", headers=bearer(6), timeout=10)
        assert other.status_code == 404

    assert api.proc.returncode == 0, api.log()
    reader = csv.reader(io.StringIO(download.content.decode("utf-8"), newline=""))
    assert tuple(next(reader)) == CSV_COLUMNS
    rows = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in reader]
    assert len(rows) == len(books)
    for row, book in zip(rows, books, strict=True):
        for column in ("title", "isbn", "description", "reading_status", "author"):
            assert unneutralise(row[column]) == (book[column] or ""), column
        assert row["current_page"] == str(book["current_page"])
        assert row["total_pages"] == str(book["total_pages"])
        assert row["rating"] == (book["rating"] or "")
        assert [n["content"] for n in json.loads(row["notes"])] == book["notes"]
