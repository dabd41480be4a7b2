"""A new export format is one module: registered through BOOKLOGR_TASKS_JOB_MODULES, it runs,
lists in /v1/exports and /v1/files, downloads with its content type and is in /openapi.json,
with no table or migration of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from booklogr_tasks.core import formats
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.worker.runner import Runner

from tests.api.support import bearer
from tests.helpers import seed_books

MODULE = "tests.export_format_for_tests"


@pytest.fixture
def markdown_format(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The format registered the way an operator adds one; gone again after the test (other
    tests compare the registry with what is deployed)."""
    from booklogr_tasks import jobs

    registry, known = dict(jobs.REGISTRY), dict(formats.FORMATS)
    monkeypatch.setenv("BOOKLOGR_TASKS_JOB_MODULES", MODULE)
    jobs._load_extra_jobs()
    try:
        yield
    finally:
        sys.modules.pop(MODULE, None)
        jobs.REGISTRY.clear()
        jobs.REGISTRY.update(registry)
        formats.FORMATS.clear()
        formats.FORMATS.update(known)


def test_a_format_registered_from_one_module_runs_lists_downloads_and_is_documented(
    markdown_format: None, client: Any, conn: Any
) -> None:
    seed_books(conn, owner_id=5, count=2)
    titles = [r["title"] for r in conn.execute("SELECT title FROM books ORDER BY id")]

    # It runs: created through the API, finished by the real runner.
    created = client.post(
        "/v1/tasks",
        headers={**bearer(5), "Content-Type": "application/json"},
        body=json.dumps({"type": "markdown_export", "data": {}}),
    )
    assert created.status_code == 202, created.body
    task_id = json.loads(created.body)["task_id"]
    assert Runner(get_settings(), "test-worker").run_by_id(task_id) == "success"
    task = json.loads(client.get(f"/v1/tasks/{task_id}", headers=bearer(5)).body)
    export_id = task["result"]["export_id"]
    assert task["result"]["download"] == f"/v1/exports/markdown/{export_id}"

    # It lists in /v1/exports, named with its extension (and its format, being named apart).
    (item,) = json.loads(client.get("/v1/exports", headers=bearer(5)).body)["items"]
    assert item["format"] == "markdown" and item["id"] == export_id
    assert item["filename"] == f"booklogr-export-{export_id}.markdown.md"

    # It downloads with its content type, by format and id...
    expected = ("# My books\n\n" + "".join(f"- {t}\n" for t in titles)).encode()
    response = client.get(item["download"], headers=bearer(5))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.body == expected
    assert client.get(item["download"], headers=bearer(6)).status_code == 404

    # ... and through BookLogr's file list, where its stored name carries the extension.
    (listed,) = json.loads(client.get("/v1/files", headers=bearer(5)).body)
    assert listed["filename"].startswith("export_markdown-") and listed["filename"].endswith(".md")
    file = client.get(f"/v1/files/{listed['filename']}", headers=bearer(5))
    assert file.status_code == 200 and file.body == expected
    assert file.headers["Content-Type"] == "text/markdown; charset=utf-8"

    # The OpenAPI document names it wherever it names formats and task types.
    doc = json.loads(client.get("/openapi.json").body)
    download = doc["paths"]["/v1/exports/{format}/{id}"]["get"]
    (param,) = [p for p in download["parameters"] if p["name"] == "format"]
    assert "markdown" in param["schema"]["enum"]
    assert "text/markdown" in download["responses"]["200"]["content"]
    assert "markdown" in doc["components"]["schemas"]["Export"]["properties"]["format"]["enum"]
    assert "markdown_export" in doc["components"]["schemas"]["TaskType"]["enum"]

    # No table of its own: its row is one of the exports table's.
    assert conn.execute("SELECT to_regclass('markdown_export') AS t").fetchone()["t"] is None
    row = conn.execute("SELECT format, owner_id, task_id FROM exports").fetchone()
    assert row == {"format": "markdown", "owner_id": 5, "task_id": task_id}


def test_the_document_names_exactly_the_registered_formats(client: Any) -> None:
    doc = json.loads(client.get("/openapi.json").body)
    download = doc["paths"]["/v1/exports/{format}/{id}"]["get"]
    (param,) = [p for p in download["parameters"] if p["name"] == "format"]
    assert param["schema"]["enum"] == formats.export_formats()
    assert set(formats.export_formats()) == {"csv", "html", "json", "goodreads", "backup"}
    assert set(download["responses"]["200"]["content"]) == {
        "text/csv",
        "text/html",
        "application/json",
    }
