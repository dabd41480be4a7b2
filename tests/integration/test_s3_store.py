"""Exports in S3 (EXPORT_BUCKET set): streamed in parts, recorded only once the object exists,
removed when the task does not succeed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import boto3
import pytest
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.storage import s3 as s3_store
from booklogr_tasks.storage.s3 import S3ExportStore
from booklogr_tasks.worker.runner import run_task
from chalice.test import Client

from tests.api.support import FUNCTIONS, bearer, load_app
from tests.helpers import insert_task, seed_books, task_row
from tests.integration import fake_aws as aws
from tests.integration.fake_aws import reset_default_runner

# Fixtures this module uses.
fake_aws, bucket, lambda_runner = aws.fake_aws, aws.bucket, aws.lambda_runner

MiB = 1024 * 1024
# S3 refuses parts under 5 MiB (except the last); moto enforces the same.
SMALLEST_PART = 5 * MiB


def seed_large_library(conn, owner_id: int, books: int, description_bytes: int) -> None:
    conn.execute(
        """INSERT INTO books (title, isbn, description, reading_status, current_page,
                              total_pages, author, rating, owner_id)
           SELECT 'Book ' || i, lpad(i::text, 13, '0'), repeat('d', %(size)s), 'Read',
                  i %% 300, 300, 'Author ' || (i %% 97), 4.5, %(owner)s
             FROM generate_series(1, %(n)s) AS i""",
        {"size": description_bytes, "owner": owner_id, "n": books},
    )


def s3_object(bucket_name: str, key: str) -> dict:
    return boto3.client("s3").get_object(Bucket=bucket_name, Key=key)


def pending_uploads(bucket_name: str) -> list[str]:
    uploads = boto3.client("s3").list_multipart_uploads(Bucket=bucket_name).get("Uploads", [])
    return [u["Key"] for u in uploads]


def export_row(conn, task_id: int) -> dict | None:
    return conn.execute("SELECT * FROM csv_export WHERE task_id = %s", (task_id,)).fetchone()


def test_large_export_streams_in_parts_and_is_recorded_once_complete(
    bucket: str,
    conn,
    lambda_runner: None,
    monkeypatch: pytest.MonkeyPatch,
    export_folder: Path,
) -> None:
    monkeypatch.setattr(s3_store, "PART_SIZE", SMALLEST_PART)
    seed_large_library(conn, owner_id=4, books=12_000, description_bytes=900)  # ≈ 11 MiB
    task_id = insert_task(conn, "csv_export", {"owner_id": 4}, created_by=4)

    assert run_task(task_id) == "success"

    row = export_row(conn, task_id)
    assert row is not None and row["owner_id"] == 4
    obj = s3_object(bucket, row["filename"])
    body = obj["Body"].read()
    assert len(body) > 2 * SMALLEST_PART
    assert obj["ETag"].strip('"').endswith("-3"), "uploaded as three parts"
    assert obj["ContentType"] == "text/csv; charset=utf-8"
    assert pending_uploads(bucket) == []
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 12_000
    assert rows[0]["title"] == "Book 1" and rows[-1]["title"] == "Book 12000"
    result = tasks.get_task(conn, task_id).result
    assert result is not None and result["download"] == f"/v1/exports/csv/{row['id']}"

    # Part boundaries change nothing: the same export in the local folder has the same bytes.
    monkeypatch.delenv("EXPORT_BUCKET")
    get_settings.cache_clear()
    local_task = insert_task(conn, "csv_export", {"owner_id": 4}, created_by=4)
    reset_default_runner()  # a new container, configured without a bucket
    assert run_task(local_task) == "success"
    local_row = export_row(conn, local_task)
    assert local_row is not None
    assert (export_folder / local_row["filename"]).read_bytes() == body


def test_small_export_is_one_put(bucket: str, conn, lambda_runner: None) -> None:
    seed_books(conn, owner_id=2)
    task_id = insert_task(conn, "csv_export", {"owner_id": 2}, created_by=2)
    assert run_task(task_id) == "success"
    row = export_row(conn, task_id)
    assert row is not None
    obj = s3_object(bucket, row["filename"])
    assert "-" not in obj["ETag"].strip('"')
    assert obj["Body"].read().startswith(b"title,isbn,description,reading_status,")
    assert pending_uploads(bucket) == []


def test_no_object_without_a_row_when_success_does_not_commit(
    bucket: str, conn, lambda_runner: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_books(conn, owner_id=6)
    task_id = insert_task(conn, "csv_export", {"owner_id": 6}, created_by=6)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database refused the export row")

    monkeypatch.setattr(tasks, "record_export", refuse)
    assert run_task(task_id) == "failure"
    error = task_row(conn, task_id)["error"]
    # The user reads a sentence; the exception is in the log only.
    assert "internal error" in error and "refused" not in error and "RuntimeError" not in error
    assert export_row(conn, task_id) is None
    assert S3ExportStore(bucket).list_keys() == []
    assert pending_uploads(bucket) == []


def test_discard_aborts_an_unfinished_upload_and_deletes_a_finished_one(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_store, "PART_SIZE", SMALLEST_PART)
    store = S3ExportStore(bucket)

    unfinished = store.begin("1/csv-1-1.csv", "csv")
    unfinished.write(b"x" * (SMALLEST_PART + 10))  # one part sent, the upload is open
    assert pending_uploads(bucket) == ["1/csv-1-1.csv"]
    unfinished.discard()
    assert pending_uploads(bucket) == []

    finished = store.begin("1/csv-1-2.csv", "csv")
    finished.write(b"a,b\r\n")
    finished.complete()
    assert store.list_keys() == ["1/csv-1-2.csv"]
    finished.discard()
    finished.discard()  # twice is fine
    assert store.list_keys() == []


def test_discard_leftovers_removes_only_that_tasks_files(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_store, "PART_SIZE", SMALLEST_PART)
    store = S3ExportStore(bucket)
    for key in ("9/csv-1-10.csv", "9/csv-12-11.csv", "9/html-1-12.html"):
        pending = store.begin(key, key.rsplit(".", 1)[1])
        pending.write(b"done")
        pending.complete()
    lost = store.begin("9/csv-1-13.csv", "csv")
    lost.write(b"x" * SMALLEST_PART)  # a lost attempt's open upload

    assert store.discard_leftovers(9, "csv", 1) == 2
    assert store.list_keys() == ["9/csv-12-11.csv", "9/html-1-12.html"]
    assert pending_uploads(bucket) == []


def test_presigned_url_downloads_the_file_under_its_export_name(bucket: str) -> None:
    import requests

    store = S3ExportStore(bucket)
    pending = store.begin("3/csv-5-8.csv", "csv")
    pending.write("title\r\nÜnïcödé\r\n".encode())
    pending.complete()
    url = store.presigned_url("3/csv-5-8.csv", "csv", 8, expires=60)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == "title\r\nÜnïcödé\r\n".encode()
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="booklogr-export-8.csv"'
    )


def test_api_redirects_to_a_short_lived_link_that_downloads_the_exact_file(
    bucket: str, conn, lambda_runner: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    monkeypatch.setenv("DOWNLOAD_URL_SECONDS", "120")
    get_settings.cache_clear()
    seed_books(conn, owner_id=11)
    task_id = insert_task(conn, "csv_export", {"owner_id": 11}, created_by=11)
    assert run_task(task_id) == "success"
    row = export_row(conn, task_id)
    assert row is not None
    stored = s3_object(bucket, row["filename"])["Body"].read()

    app = load_app().app
    with Client(app, stage_name="local", project_dir=str(FUNCTIONS)) as client:
        path = f"/v1/exports/csv/{row['id']}"
        response = client.http.get(path, headers=bearer(11))
        assert response.status_code == 302
        location = response.headers["Location"]
        # Someone else's export is not there at all.
        assert client.http.get(path, headers=bearer(12)).status_code == 404

    assert location.startswith(f"https://{bucket}.s3.amazonaws.com/{row['filename']}?")
    assert "X-Amz-Expires=120" in location
    download = requests.get(location, timeout=10)
    assert download.status_code == 200
    assert download.content == stored
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="booklogr-export-{row["id"]}.csv"'
    )
