"""Import files stay out of `tasks`: the API stores `data.csv` as an upload, the import reads it
from the store, and the upload is deleted after success, and with a failure the file itself
causes; after another failure it is kept for a retry, for FAILED_UPLOAD_RETENTION_HOURS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import queries
from booklogr_tasks.worker.maintenance import run_retention
from booklogr_tasks.worker.runner import Runner
from chalice.test import Client

from tests.api.support import FUNCTIONS, bearer, load_app
from tests.helpers import task_row

GOODREADS = (
    "Title,Author,ISBN,ISBN13,My Rating,Exclusive Shelf,Date Read\r\n"
    'Dune,Frank Herbert,"=""0441172717""","=""""",4,read,2021/03/04\r\n'
)


@pytest.fixture
def client(env: dict[str, str]) -> Any:
    with Client(load_app().app, stage_name="local", project_dir=str(FUNCTIONS)) as c:
        yield c.http


def uploads(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in (folder / "uploads").rglob("*") if p.is_file()
    )


def create_import(client: Any, text: str, user: int = 5) -> int:
    response = client.post(
        "/v1/tasks",
        headers={**bearer(user), "Content-Type": "application/json"},
        body=json.dumps({"type": "goodreads_import", "data": {"csv": text}}).encode(),
    )
    assert response.status_code == 202, response.body
    return int(json.loads(response.body)["task_id"])


def test_the_file_text_is_stored_as_an_upload_and_deleted_after_success(
    client: Any, settings: Settings, conn: Any, export_folder: Path
) -> None:
    task_id = create_import(client, GOODREADS)

    data = json.loads(task_row(conn, task_id)["data"])
    assert data["csv"] is None and "Dune" not in task_row(conn, task_id)["data"]
    assert uploads(export_folder) == [data["file"]]
    assert (export_folder / data["file"]).read_bytes() == GOODREADS.encode()

    assert Runner(settings, "w").run_by_id(task_id) == "success"
    assert uploads(export_folder) == []
    shown = json.loads(client.get(f"/v1/tasks/{task_id}", headers=bearer(5)).body)
    assert shown["result"]["imported"] == 1 and "data" not in shown


def test_a_failed_import_keeps_its_upload_for_a_retry(
    client: Any, settings: Settings, conn: Any, export_folder: Path
) -> None:
    conn.execute("ALTER TABLE books ADD CONSTRAINT no_dune CHECK (title <> 'Dune')")
    task_id = create_import(client, GOODREADS)
    runner = Runner(settings, "w")
    assert runner.run_by_id(task_id) == "failure"
    assert "internal error" in task_row(conn, task_id)["error"]  # the constraint: log only
    assert len(uploads(export_folder)) == 1

    conn.execute("ALTER TABLE books DROP CONSTRAINT no_dune")
    retried = client.post(f"/v1/tasks/{task_id}/retry", headers=bearer(5))
    assert retried.status_code == 202
    assert runner.run_by_id(task_id) == "success"
    assert uploads(export_folder) == []
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 1


def test_retention_deletes_the_upload_with_its_task(
    client: Any, settings: Settings, conn: Any, export_folder: Path
) -> None:
    # A failure that is not the file's own (an unusable file's upload goes at once).
    conn.execute("ALTER TABLE books ADD CONSTRAINT no_dune CHECK (title <> 'Dune')")
    failed = create_import(client, GOODREADS)
    waiting = create_import(client, GOODREADS)
    assert Runner(settings, "w").run_by_id(failed) == "failure"
    kept = json.loads(task_row(conn, waiting)["data"])["file"]
    assert len(uploads(export_folder)) == 2
    conn.execute(
        "UPDATE tasks SET updated_on = now() - interval '90 days' WHERE id = %s", (failed,)
    )

    expired = run_retention(settings.model_copy(update={"task_retention_days": 3.0}))

    assert expired is not None and expired.tasks == 1 and len(expired.upload_files) == 1
    assert uploads(export_folder) == [kept]


def test_an_unusable_files_upload_is_deleted_with_its_failure(
    client: Any, settings: Settings, conn: Any, export_folder: Path
) -> None:
    for text in ("not,a,goodreads,file\r\n", "Title,Author\r\n" + "x," * 600 + "\r\n"):
        task_id = create_import(client, text)
        assert Runner(settings, "w").run_by_id(task_id) == "failure"
        assert uploads(export_folder) == []  # a retry could not fix the file


def test_a_failed_imports_upload_is_kept_for_its_retention_then_deleted(
    client: Any, settings: Settings, conn: Any, export_folder: Path
) -> None:
    conn.execute("ALTER TABLE books ADD CONSTRAINT no_dune CHECK (title <> 'Dune')")
    task_id = create_import(client, GOODREADS)
    assert Runner(settings, "w").run_by_id(task_id) == "failure"
    assert settings.failed_upload_retention_hours == 24

    def failed_ago(hours: float) -> None:
        conn.execute(
            "UPDATE tasks SET updated_on = now() - make_interval(secs => %s) WHERE id = %s",
            (hours * 3600, task_id),
        )

    failed_ago(23)
    run_retention(settings)
    assert len(uploads(export_folder)) == 1  # still there for a retry
    failed_ago(24.5)
    expired = run_retention(settings)
    assert expired is not None and expired.tasks == 0 and len(expired.upload_files) == 1
    assert uploads(export_folder) == []
    assert task_row(conn, task_id)["status"] == "failure"  # the task itself is kept

    retried = client.post(f"/v1/tasks/{task_id}/retry", headers=bearer(5))
    assert retried.status_code == 202
    assert Runner(settings, "w").run_by_id(task_id) == "failure"
    assert (
        task_row(conn, task_id)["error"] == "the uploaded file is no longer stored; upload it again"
    )


def test_status_and_list_queries_do_not_read_task_data() -> None:
    for statement in (queries.GET_TASK, queries.GET_OWN_TASK, queries.LIST_OWN_TASKS):
        assert "data" not in statement
