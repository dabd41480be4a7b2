"""GET /v1/exports and GET /v1/exports/{format}/{id}: local folder and S3 (moto)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.worker.runner import Runner
from moto import mock_aws
from psycopg import sql

from tests.api.support import bearer, error_of
from tests.helpers import insert_task, seed_books


def run_export(conn: Any, owner: int, task_type: str = "csv_export") -> dict[str, Any]:
    """A finished export of `owner`, made by the real runner; returns the task's result."""
    task_id = insert_task(conn, task_type, {"owner_id": owner}, owner)
    assert Runner(get_settings(), "test-worker").run_by_id(task_id) == "success"
    row = conn.execute(
        "SELECT r.result FROM task_results r WHERE r.task_id = %s", (task_id,)
    ).fetchone()
    # The stored name: ids and a random part (every format's rows are readable under the view named
    # after its task type).
    stored = conn.execute(
        sql.SQL("SELECT filename FROM {} WHERE task_id = %s").format(sql.Identifier(task_type)),
        (task_id,),
    ).fetchone()
    return {"task_id": task_id, "filename": stored["filename"], **row["result"]}


def test_list_shows_the_callers_exports_newest_first(client: Any, conn: Any) -> None:
    seed_books(conn, owner_id=5, count=2)
    first, second = run_export(conn, 5), run_export(conn, 5)
    run_export(conn, 6)

    response = client.get("/v1/exports", headers=bearer(5))

    assert response.status_code == 200
    items = json.loads(response.body)["items"]
    assert [i["id"] for i in items] == [second["export_id"], first["export_id"]]
    item = items[0]
    assert set(item) == {"id", "format", "filename", "created_at", "task_id", "download"}
    assert item["format"] == "csv" and item["task_id"] == second["task_id"]
    assert item["filename"] == f"booklogr-export-{second['export_id']}.csv"
    assert item["download"] == second["download"] == f"/v1/exports/csv/{second['export_id']}"
    assert json.loads(client.get("/v1/exports?limit=1", headers=bearer(5)).body)["items"] == [item]
    error_of(client.get("/v1/exports?limit=0", headers=bearer(5)), 400)
    assert json.loads(client.get("/v1/exports", headers=bearer(7)).body) == {"items": []}


def test_download_is_the_file_as_an_attachment(client: Any, conn: Any, export_folder: Path) -> None:
    seed_books(conn, owner_id=5)
    export = run_export(conn, 5)
    stored = conn.execute(
        "SELECT filename FROM csv_export WHERE id = %s", (export["export_id"],)
    ).fetchone()["filename"]

    response = client.get(export["download"], headers=bearer(5))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="booklogr-export-{export["export_id"]}.csv"'
    )
    assert response.body == (export_folder / stored).read_bytes()


def test_every_format_is_listed_and_downloads_with_its_type(client: Any, conn: Any) -> None:
    from booklogr_tasks.core.formats import export_formats
    from booklogr_tasks.http.routes import openapi_document

    seed_books(conn, owner_id=5, count=2)
    kinds = {
        "csv": ("text/csv", ".csv"),
        "html": ("text/html", ".html"),
        "json": ("application/json", ".json"),
        "goodreads": ("text/csv", ".goodreads.csv"),
        "backup": ("application/json", ".backup.json"),
    }
    assert set(kinds) == set(export_formats())
    made = {fmt: run_export(conn, 5, f"{fmt}_export") for fmt in kinds}

    items = json.loads(client.get("/v1/exports", headers=bearer(5)).body)["items"]
    assert {i["format"]: i["id"] for i in items} == {f: e["export_id"] for f, e in made.items()}
    for item in items:
        content_type, suffix = kinds[item["format"]]
        assert item["filename"] == f"booklogr-export-{item['id']}{suffix}"
        response = client.get(item["download"], headers=bearer(5))
        assert response.status_code == 200
        assert response.headers["Content-Type"] == f"{content_type}; charset=utf-8"
        assert (
            response.headers["Content-Disposition"] == f'attachment; filename="{item["filename"]}"'
        )
    assert (
        made["goodreads"]["download"] == f"/v1/exports/goodreads/{made['goodreads']['export_id']}"
    )
    assert client.get(made["goodreads"]["download"], headers=bearer(6)).status_code == 404

    # The document names exactly the formats there are.
    doc = openapi_document()
    (param,) = [
        p
        for p in doc["paths"]["/v1/exports/{format}/{id}"]["get"]["parameters"]
        if p["name"] == "format"
    ]
    assert param["schema"]["enum"] == export_formats()
    assert doc["components"]["schemas"]["Export"]["properties"]["format"]["enum"] == (
        export_formats()
    )


def test_another_users_or_an_absent_export_is_404(client: Any, conn: Any) -> None:
    theirs = run_export(conn, 6)
    eid = theirs["export_id"]
    for path in (
        f"/v1/exports/csv/{eid}",
        f"/v1/exports/csv/{eid + 50}",
        f"/v1/exports/html/{eid}",
        f"/v1/exports/xls/{eid}",
        "/v1/exports/csv/abc",
        "/v1/exports/csv/0",
        "/v1/exports/csv/99999999999999999999",
    ):
        assert error_of(client.get(path, headers=bearer(5)), 404)["error"] == "not_found"
    assert client.get(f"/v1/exports/csv/{eid}", headers=bearer(6)).status_code == 200


def test_a_row_whose_file_is_gone_is_404_not_500(
    client: Any, conn: Any, export_folder: Path
) -> None:
    export = run_export(conn, 5)
    for path in export_folder.rglob("*.csv"):
        path.unlink()
    body = error_of(client.get(export["download"], headers=bearer(5)), 404)
    assert "no longer available" in body["message"]


def test_a_key_outside_the_export_folder_is_never_served(
    client: Any, conn: Any, export_folder: Path
) -> None:
    export = run_export(conn, 5)
    secret = export_folder.parent / "outside.csv"
    secret.write_text("secret")
    conn.execute(
        "UPDATE csv_export SET filename = '../outside.csv' WHERE id = %s", (export["export_id"],)
    )
    error_of(client.get(export["download"], headers=bearer(5)), 404)


@pytest.fixture
def bucket(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("EXPORT_BUCKET", "booklogr-exports-test")
    monkeypatch.setenv("DOWNLOAD_URL_SECONDS", "120")
    get_settings.cache_clear()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="booklogr-exports-test")
        yield "booklogr-exports-test"


def test_s3_download_redirects_to_a_short_lived_presigned_url(
    client: Any, conn: Any, bucket: str
) -> None:
    seed_books(conn, owner_id=5, count=3)
    export = run_export(conn, 5)

    response = client.get(export["download"], headers=bearer(5))

    assert response.status_code == 302
    url = urlparse(response.headers["Location"])
    query = parse_qs(url.query)
    assert bucket in url.netloc + url.path
    assert re.search(rf"-{export['export_id']}-[0-9a-f]{{8}}\.csv$", url.path), url.path
    assert query["X-Amz-Expires"] == ["120"]
    assert query["response-content-disposition"] == [
        f'attachment; filename="booklogr-export-{export["export_id"]}.csv"'
    ]
    error_of(client.get(export["download"], headers=bearer(6)), 404)
