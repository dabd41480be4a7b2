"""Uploaded files in the export store (local folder and S3): streamed in, size-limited while
read, opened as a stream by the import that names them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from booklogr_tasks.core.errors import PayloadTooLarge, UploadMissing, UploadTooLarge
from booklogr_tasks.core.models import ImportPayload
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.storage import ExportStore, LocalFolderStore, export_store, upload_key
from booklogr_tasks.storage import s3 as s3_store
from booklogr_tasks.storage.s3 import S3ExportStore
from booklogr_tasks.worker.runner import Runner
from pydantic import ValidationError

from tests.helpers import insert_task, task_row
from tests.integration import fake_aws as aws

fake_aws, bucket = aws.fake_aws, aws.bucket

MiB = 1024 * 1024


class Chunks(io.RawIOBase):
    """A source that hands out its bytes in small pieces, like a request body being received,
    and counts how much was read."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.data, self.piece, self.read_bytes = data, piece, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.piece, len(self.data) - self.read_bytes)
        buffer[:n] = self.data[self.read_bytes : self.read_bytes + n]
        self.read_bytes += n
        return n


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[ExportStore]:
    if request.param == "local":
        yield LocalFolderStore(settings.export_folder)
    else:
        request.getfixturevalue("bucket")
        yield export_store(get_settings())


def stored_keys(store: ExportStore) -> list[str]:
    if isinstance(store, LocalFolderStore):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3ExportStore)
    client = store.client
    objects = client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return sorted([o["Key"] for o in objects] + [f"(pending) {u['Key']}" for u in uploads])


def test_upload_keys_are_unique_and_in_the_owners_folder() -> None:
    first, second = upload_key(7), upload_key(7)
    assert first != second
    assert first.startswith("uploads/7/") and second.startswith("uploads/7/")


def test_an_upload_is_saved_in_chunks_and_read_back_as_a_stream(store: ExportStore) -> None:
    data = bytes(range(256)) * (3 * 4096 + 17)  # ≈ 3 MiB, not a whole number of chunks
    key = upload_key(3)
    source = Chunks(data)
    assert store.save_upload(key, io.BufferedReader(source), max_bytes=len(data)) == len(data)
    assert source.read_bytes == len(data)
    with store.open_upload(key) as stream:
        first = stream.read(10)
        assert first == data[:10]
        assert first + stream.read() == data
    assert stored_keys(store) == [key]
    store.delete(key)
    assert stored_keys(store) == []
    with pytest.raises(UploadMissing):
        store.open_upload(key)


def test_a_too_large_upload_stops_at_its_limit_and_leaves_nothing(store: ExportStore) -> None:
    data = b"x" * (2 * MiB + 1)
    source = Chunks(data)
    with pytest.raises(UploadTooLarge) as refused:
        store.save_upload(upload_key(3), io.BufferedReader(source), max_bytes=2 * MiB)
    assert isinstance(refused.value, PayloadTooLarge) and refused.value.status == 413
    assert "larger than the limit of 2097152 bytes" in refused.value.message
    assert stored_keys(store) == []
    # Reading stopped at the first chunk past the limit, not at the end of the source.
    assert source.read_bytes <= 2 * MiB + 2 * 1024 * 1024


def test_a_large_s3_upload_goes_in_parts(
    bucket: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_store, "PART_SIZE", 5 * MiB)
    store = S3ExportStore(bucket)
    data = b"0123456789abcdef" * (11 * MiB // 16)
    key = upload_key(4)
    assert store.save_upload(key, io.BytesIO(data), max_bytes=20 * MiB) == len(data)
    head = boto3.client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3"), "uploaded as three parts"
    with store.open_upload(key) as stream:
        assert stream.read() == data
    # Past the limit in the second part: the multipart upload is aborted.
    with pytest.raises(UploadTooLarge):
        store.save_upload(upload_key(4), io.BytesIO(data), max_bytes=7 * MiB)
    assert stored_keys(store) == [key]


def test_upload_keys_cannot_leave_the_upload_folder(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    for key in ("4/csv-1-1.csv", "uploads/../4/csv-1-1.csv", "../uploads/x"):
        with pytest.raises(ValueError):
            store.open_upload(key)
        with pytest.raises(ValueError):
            store.save_upload(key, io.BytesIO(b"x"), 10)


# --- the payload ---------------------------------------------------------------------------------


def test_an_import_payload_names_exactly_one_file_of_its_own_owner() -> None:
    assert ImportPayload(owner_id=5, csv="a").file is None
    assert ImportPayload(owner_id=5, file="uploads/5/abc123.csv").csv is None
    refused = [
        {"owner_id": 5},
        {"owner_id": 5, "csv": "a", "file": "uploads/5/abc"},
        {"owner_id": 5, "file": "uploads/6/abc"},  # another user's upload
        {"owner_id": 5, "file": "uploads/5/../6/abc"},
        {"owner_id": 5, "file": "uploads/5/"},
        {"owner_id": 5, "file": "uploads/5/sub/abc"},
        {"owner_id": 5, "file": "uploads/55/abc"},
        {"owner_id": 5, "file": "5/csv-1-1.csv"},  # an export, not an upload
        {"owner_id": 5, "file": "/etc/passwd"},
        {"owner_id": 5, "csv": ""},
    ]
    for data in refused:
        with pytest.raises(ValidationError):
            ImportPayload.model_validate(data)


# --- an import reads the upload it names ---------------------------------------------------------


def test_an_import_reads_its_file_from_the_store(
    store: ExportStore, settings: Settings, conn: Any
) -> None:
    header = "title,isbn,description,reading_status,current_page,total_pages,author,rating,notes"
    text = f"\ufeff{header}\r\nStored Book,,,Read,1,2,A,,[]\r\n"
    key = upload_key(5)
    store.save_upload(key, io.BytesIO(text.encode()), max_bytes=MiB)
    task_id = insert_task(conn, "booklogr_csv_import", {"owner_id": 5, "file": key}, 5)
    assert Runner(get_settings(), "w").run_by_id(task_id) == "success", task_row(conn, task_id)
    titles = conn.execute("SELECT title FROM books WHERE owner_id = 5").fetchall()
    assert [r["title"] for r in titles] == ["Stored Book"]
    assert stored_keys(store) == []  # deleted once the import committed


def test_an_import_whose_upload_is_gone_fails_with_a_message(settings: Settings, conn: Any) -> None:
    task_id = insert_task(
        conn, "goodreads_import", {"owner_id": 5, "file": upload_key(5)}, created_by=5
    )
    assert Runner(settings, "w").run_by_id(task_id) == "failure"
    assert task_row(conn, task_id)["error"] == (
        "the uploaded file is no longer stored; upload it again"
    )
