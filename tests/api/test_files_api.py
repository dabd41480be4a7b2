"""BookLogr's /v1/files routes: list (naive UTC, newest first, 404 when none), download (ours and
BookLogr's own), upload an import as multipart/form-data (200 / 422 / 202, 4xx for bad forms)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import requests
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db.pool import connect
from booklogr_tasks.http import routes as api
from booklogr_tasks.worker.runner import Runner
from moto import mock_aws

from tests.api.support import bearer, error_of
from tests.api.test_exports_api import run_export
from tests.helpers import seed_books, task_row

BOOKLOGR_CSV = (
    "title,isbn,description,reading_status,current_page,total_pages,author,rating,notes\r\n"
    "Dune,9780441172719,,Read,412,412,Frank Herbert,4.5,[]\r\n"
    "Emma,,,To be read,0,474,Jane Austen,,[]\r\n"
)
BOUNDARY = "----booklogrFormBoundary7MA4YWxkTrZu0gW"


def multipart(parts: list[tuple[str, str | tuple[str, bytes]]]) -> tuple[dict[str, str], bytes]:
    """A body as a browser's FormData sends it: (name, value) or (name, (filename, bytes))."""
    out = bytearray()
    for name, value in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if isinstance(value, tuple):
            filename, data = value
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            ).encode()
            out += data
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
        out += b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, bytes(out)


def upload(client: Any, user: int, parts: list[tuple[str, Any]]) -> Any:
    headers, body = multipart(parts)
    return client.post("/v1/files", headers={**bearer(user), **headers}, body=body)


def uploads_in(folder: Path) -> list[Path]:
    return [p for p in (folder / "uploads").rglob("*") if p.is_file()]


@contextmanager
def worker(settings: Settings) -> Iterator[None]:
    """A worker running every fresh task, as a listener would, while the request waits."""
    stop = threading.Event()
    runner = Runner(settings, "files-test-worker")

    def loop() -> None:
        with connect(settings.database_url, autocommit=True) as conn:
            while not stop.is_set():
                fresh = conn.execute("SELECT id FROM tasks WHERE status = 'fresh' ORDER BY id")
                for row in fresh.fetchall():
                    runner.run_by_id(row["id"])
                stop.wait(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        runner.close()


@pytest.fixture
def waiting(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    # Long enough for any import of these tests: the request returns as soon as it ends.
    monkeypatch.setenv("UPLOAD_WAIT_SECONDS", "60")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def not_waiting(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("UPLOAD_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    return get_settings()


# --- GET /v1/files ------------------------------------------------------------------------------


def test_list_is_404_until_there_is_a_file_then_the_callers_newest_first(
    client: Any, conn: Any
) -> None:
    body = error_of(client.get("/v1/files", headers=bearer(5)), 404)
    assert body["error"] == "not_found"

    seed_books(conn, owner_id=5, count=2)
    # BookLogr's own export, made by its API before this service ran one.
    conn.execute(
        "INSERT INTO files (filename, owner_id, created_at) "
        "VALUES ('export_261201_Ab3dE6gH.csv', 5, now() AT TIME ZONE 'UTC' - interval '1 day')"
    )
    first, second = run_export(conn, 5), run_export(conn, 5)
    run_export(conn, 6)

    response = client.get("/v1/files", headers=bearer(5))

    assert response.status_code == 200
    listed = json.loads(response.body)
    assert [f["filename"] for f in listed] == [
        second["filename"],
        first["filename"],
        "export_261201_Ab3dE6gH.csv",
    ]
    assert all(set(f) == {"id", "filename", "created_at"} for f in listed)
    assert len({f["id"] for f in listed}) == 3
    # Naive UTC without offset: the web app does `new Date(created_at + "Z")`.
    newest = listed[0]["created_at"]
    assert not newest.endswith("Z") and "+" not in newest
    made = datetime.fromisoformat(newest).replace(tzinfo=UTC)
    assert abs(made - datetime.now(UTC)) < timedelta(minutes=5)
    # The same exports are still in this service's own list.
    exports = json.loads(client.get("/v1/exports", headers=bearer(5)).body)["items"]
    assert [e["id"] for e in exports] == [second["export_id"], first["export_id"]]


# --- GET /v1/files/<filename> --------------------------------------------------------------------


def test_download_is_the_callers_file_as_an_attachment(
    client: Any, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=5)
    export = run_export(conn, 5)
    name = export["filename"]

    response = client.get(f"/v1/files/{name}", headers=bearer(5))

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.body == (export_folder / name).read_bytes()
    assert response.body == client.get(export["download"], headers=bearer(5)).body


def test_booklogrs_own_files_are_served_from_the_export_folder(
    client: Any, conn: Any, export_folder: Path
) -> None:
    (export_folder / "export_261201_Ab3dE6gH.json").write_text('[{"title": "Dune"}]')
    conn.execute(
        "INSERT INTO files (filename, owner_id, created_at) "
        "VALUES ('export_261201_Ab3dE6gH.json', 5, now() AT TIME ZONE 'UTC')"
    )
    response = client.get("/v1/files/export_261201_Ab3dE6gH.json", headers=bearer(5))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.body) == [{"title": "Dune"}]

    # Listed but gone from the folder: 404 that says so, not 500.
    (export_folder / "export_261201_Ab3dE6gH.json").unlink()
    body = error_of(client.get("/v1/files/export_261201_Ab3dE6gH.json", headers=bearer(5)), 404)
    assert "no longer available" in body["message"]


def test_someone_elses_or_an_unlisted_file_is_404(
    client: Any, conn: Any, export_folder: Path
) -> None:
    theirs = run_export(conn, 6)
    name = theirs["filename"]
    (export_folder / "unlisted.csv").write_text("secret")
    for path in (
        f"/v1/files/{name}",
        "/v1/files/unlisted.csv",
        "/v1/files/..",
        "/v1/files/.hidden",
        "/v1/files/%2e%2e%2fsecret",
    ):
        assert error_of(client.get(path, headers=bearer(5)), 404)["error"] == "not_found", path
    assert client.get(f"/v1/files/{name}", headers=bearer(6)).status_code == 200


@pytest.fixture
def bucket(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("EXPORT_BUCKET", "booklogr-files-test")
    get_settings.cache_clear()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="booklogr-files-test")
        yield "booklogr-files-test"


def test_s3_download_redirects_like_the_exports_route(client: Any, conn: Any, bucket: str) -> None:
    seed_books(conn, owner_id=5)
    export = run_export(conn, 5)
    name = export["filename"]

    response = client.get(f"/v1/files/{name}", headers=bearer(5))

    assert response.status_code == 302
    url = urlparse(response.headers["Location"])
    assert bucket in url.netloc + url.path and url.path.endswith(f"/{name}")
    error_of(client.get(f"/v1/files/{name}", headers=bearer(6)), 404)


# --- POST /v1/files ------------------------------------------------------------------------------


def test_an_upload_that_imports_quickly_answers_like_booklogr(
    client: Any, conn: Any, waiting: Settings, export_folder: Path
) -> None:
    parts = [("file", ("library.csv", BOOKLOGR_CSV.encode())), ("type", "csv")]
    with worker(waiting):
        response = upload(client, 5, parts)
        assert response.status_code == 200, response.body
        assert json.loads(response.body)["message"] == "Imported 2/2 books."

        # Again: both are already in the library; BookLogr's count is out of the file's rows.
        again = upload(client, 5, parts)
        assert json.loads(again.body)["message"] == "Imported 0/2 books."

        ticked = upload(client, 5, [*parts, ("allow_duplicates", "true")])
        assert json.loads(ticked.body)["message"] == "Imported 2/2 books."
    titles = conn.execute("SELECT title FROM books WHERE owner_id = 5 ORDER BY id").fetchall()
    assert [t["title"] for t in titles] == ["Dune", "Emma", "Dune", "Emma"]
    task = task_row(conn, json.loads(ticked.body)["task_id"])
    data = json.loads(task["data"])
    assert task["type"] == "booklogr_csv_import" and data["allow_duplicates"] is True
    assert data["file"].startswith("uploads/5/") and data.get("csv") is None


def test_a_file_the_import_cannot_read_is_422_naming_the_problem(
    client: Any, conn: Any, waiting: Settings
) -> None:
    not_goodreads = b"Title,Author\r\nDune,Frank Herbert\r\n"
    with worker(waiting):
        response = upload(client, 5, [("file", ("gr.csv", not_goodreads)), ("type", "goodreads")])
    body = error_of(response, 422)
    assert body["error"] == "import_failed"
    assert "required columns missing" in body["message"] and "ISBN13" in body["message"]
    assert conn.execute("SELECT count(*) AS n FROM books").fetchone()["n"] == 0


def test_allow_duplicates_is_true_or_false_in_any_case(
    client: Any, conn: Any, not_waiting: Settings
) -> None:
    for value, expected in (("True", True), ("FALSE", False), ("false", False)):
        parts = [("file", ("a.csv", BOOKLOGR_CSV.encode())), ("type", "csv")]
        response = upload(client, 5, [*parts, ("allow_duplicates", value)])
        assert response.status_code == 202, response.body
        data = json.loads(task_row(conn, json.loads(response.body)["task_id"])["data"])
        assert data["allow_duplicates"] is expected


def test_an_import_still_running_is_202_pointing_at_its_task(
    client: Any, conn: Any, not_waiting: Settings, export_folder: Path
) -> None:
    response = upload(client, 5, [("file", ("sg.csv", b"Title\r\n")), ("type", "storygraph")])
    assert response.status_code == 202, response.body
    body = json.loads(response.body)
    task_id = body["task_id"]
    assert response.headers["Location"] == f"/v1/tasks/{task_id}"
    # The task's address is for programs (Location, task_id); the reader's toast speaks of the
    # library.
    assert body["status"] == "fresh" and "/v1/tasks" not in body["message"]
    assert body["message"].startswith("Your import is running")
    assert task_row(conn, task_id)["type"] == "storygraph_import"
    assert len(uploads_in(export_folder)) == 1


@pytest.mark.parametrize(
    ("parts", "status", "words"),
    [
        ([("type", "csv")], 422, "no `file`"),
        ([("file", ("a.csv", BOOKLOGR_CSV.encode()))], 422, "no `type`"),
        ([("file", ("a.csv", BOOKLOGR_CSV.encode())), ("type", "xlsx")], 422, "known types: csv"),
        ([("file", ("a.csv", b"")), ("type", "csv")], 422, "empty"),
        (
            [("file", ("a.csv", b"x")), ("type", "csv"), ("allow_duplicates", "maybe")],
            422,
            "allow_duplicates",
        ),
        *(
            ([("file", ("a.csv", b"x")), ("type", "csv"), ("allow_duplicates", v)], 422, "true or")
            for v in ("", "yes", " true", "1", "\x1ctrue")
        ),
        (
            [("file", ("a.csv", b"x")), ("file", ("b.csv", b"y")), ("type", "csv")],
            400,
            "more than one",
        ),
        ([("file", ("a.csv", b"x")), ("type", "c" * 2000)], 400, "longer than"),
    ],
)
def test_bad_forms_are_4xx_and_leave_no_upload(
    client: Any,
    conn: Any,
    not_waiting: Settings,
    export_folder: Path,
    parts: list[tuple[str, Any]],
    status: int,
    words: str,
) -> None:
    body = error_of(upload(client, 5, parts), status)
    assert words in body["message"]
    assert uploads_in(export_folder) == []
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_a_type_this_deployment_does_not_serve_names_the_ones_it_does(
    client: Any, not_waiting: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(api.UPLOAD_IMPORT_TYPES, "kindle", "kindle_import")  # mapped, unregistered
    parts = [("file", ("a.csv", b"x")), ("type", "kindle")]
    message = error_of(upload(client, 5, parts), 422)["message"]
    assert "unknown import type 'kindle'" in message and "goodreads" in message


def test_malformed_or_not_multipart_bodies_are_refused(
    client: Any, conn: Any, not_waiting: Settings, export_folder: Path
) -> None:
    headers, body = multipart([("file", ("a.csv", BOOKLOGR_CSV.encode())), ("type", "csv")])
    cut = body[: len(body) // 2]
    response = client.post("/v1/files", headers={**bearer(5), **headers}, body=cut)
    assert "closing boundary" in error_of(response, 400)["message"]

    no_boundary = {**bearer(5), "Content-Type": "multipart/form-data"}
    assert (
        "boundary"
        in error_of(client.post("/v1/files", headers=no_boundary, body=body), 400)["message"]
    )
    as_json = {**bearer(5), "Content-Type": "application/json"}
    assert client.post("/v1/files", headers=as_json, body=b"{}").status_code == 415
    assert uploads_in(export_folder) == []
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_a_file_over_the_upload_limit_is_413_and_nothing_is_kept(
    client: Any,
    conn: Any,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    export_folder: Path,
) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    parts = [("file", ("big.csv", b"x" * 5000)), ("type", "csv")]
    assert "1000 bytes" in error_of(upload(client, 5, parts), 413)["message"]

    # Declared too large: refused before anything is read.
    headers, body = multipart(parts)
    declared = {**bearer(5), **headers, "Content-Length": str(10**9)}
    error_of(client.post("/v1/files", headers=declared, body=body), 413)
    assert uploads_in(export_folder) == []
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_an_upload_over_the_pending_task_cap_is_429_and_keeps_no_file(
    client: Any,
    conn: Any,
    not_waiting: Settings,
    export_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_PENDING_TASKS_PER_USER", "1")
    get_settings.cache_clear()
    parts = [("file", ("a.csv", BOOKLOGR_CSV.encode())), ("type", "csv")]
    assert upload(client, 5, parts).status_code == 202
    response = upload(client, 5, parts)
    assert error_of(response, 429)["error"] == "too_many_tasks"
    assert response.headers["Retry-After"]
    assert len(uploads_in(export_folder)) == 1  # the first task's file only
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 1


# --- POST /v1/uploads: a file straight to S3, past API Gateway's 10 MB -------------------------


def test_a_direct_upload_goes_to_s3_and_imports_through_a_task(
    client: Any, conn: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    answer = client.post("/v1/uploads", headers=bearer(5))
    assert answer.status_code == 201, answer.body
    form = json.loads(answer.body)
    assert form["file"].startswith("uploads/5/") and form["max_bytes"] == 4096

    # S3 itself holds the form to its limits (moto does not check a policy; S3 does).
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert ["content-length-range", 1, 4096] in policy["conditions"]
    assert {"key": form["file"]} in policy["conditions"]

    posted = requests.post(
        form["url"],
        data=form["fields"],
        files={"file": ("library.csv", BOOKLOGR_CSV.encode())},
        timeout=10,
    )
    assert posted.status_code == 204, posted.text
    created = client.post(
        "/v1/tasks",
        headers={**bearer(5), "Content-Type": "application/json"},
        body=json.dumps({"type": "booklogr_csv_import", "data": {"file": form["file"]}}),
    )
    assert created.status_code == 202, created.body
    task_id = json.loads(created.body)["task_id"]
    Runner(get_settings(), "files-test-worker").run_by_id(task_id)

    assert task_row(conn, task_id)["status"] == "success"
    titles = conn.execute("SELECT title FROM books WHERE owner_id = 5 ORDER BY id").fetchall()
    assert [t["title"] for t in titles] == ["Dune", "Emma"]


def test_another_users_direct_upload_cannot_be_named(client: Any, bucket: str) -> None:
    form = json.loads(client.post("/v1/uploads", headers=bearer(5)).body)
    created = client.post(
        "/v1/tasks",
        headers={**bearer(6), "Content-Type": "application/json"},
        body=json.dumps({"type": "booklogr_csv_import", "data": {"file": form["file"]}}),
    )
    assert "file" in error_of(created, 422)["message"]


def test_direct_uploads_past_the_quota_are_413(
    client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key="uploads/5/" + "a" * 32, Body=b"x" * 100)
    monkeypatch.setenv("UPLOAD_QUOTA_BYTES", "100")
    get_settings.cache_clear()
    assert error_of(client.post("/v1/uploads", headers=bearer(5)), 413)["error"] == (
        "upload_quota_exceeded"
    )
    assert client.post("/v1/uploads", headers=bearer(6)).status_code == 201


def test_direct_uploads_need_s3_and_a_token(client: Any) -> None:
    assert (
        "POST /v1/files" in error_of(client.post("/v1/uploads", headers=bearer(5)), 404)["message"]
    )
    error_of(client.post("/v1/uploads"), 401)
