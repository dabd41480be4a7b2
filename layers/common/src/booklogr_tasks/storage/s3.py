"""Exports in S3 (EXPORT_BUCKET set): streamed in parts, so memory stays flat.

Bytes collect in a buffer of one part; when it fills, a multipart upload starts (or continues)
and the part is sent. An export smaller than one part, which is most of them at BookLogr's
scale, is stored with a single PutObject instead of three multipart requests.

The object exists once complete() returns, before the success transaction commits; if that
transaction does not commit, the object is deleted. Downloads are short-lived presigned URLs.
An upload abandoned by a killed worker is cleaned by the next attempt at the same task
(discard_leftovers) and by the bucket's AbortIncompleteMultipartUpload rule (infra/).
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, BinaryIO

import boto3
from botocore.config import Config

from booklogr_tasks.core.errors import UploadMissing
from booklogr_tasks.core.formats import content_type_of
from booklogr_tasks.core.models import UPLOADS, is_upload_key
from booklogr_tasks.storage.base import (
    UPLOAD_CHUNK,
    UPLOAD_CONTENT_TYPE,
    copy_upload,
    download_name,
    legacy_task_prefix,
    task_prefix,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# S3's smallest part (except the last) is 5 MiB; 8 MiB keeps requests few for large exports
# and still allows 80 GB in S3's 10,000 parts.
PART_SIZE = 8 * 1024 * 1024

_client: S3Client | None = None
_client_lock = threading.Lock()


def s3_client() -> S3Client:
    """One client per process: creating one costs tens of milliseconds, and boto3's default
    session must not be used from several threads at once, so it is built once under a lock."""
    global _client
    with _client_lock:
        if _client is None:
            # SigV4 presigned URLs work in every region (SigV2 is refused outside old ones).
            _client = boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))
        return _client


def reset_client() -> None:
    """Forget the process's client (tests that start a new fake AWS call this)."""
    global _client
    with _client_lock:
        _client = None


class _S3Pending:
    def __init__(self, client: S3Client, bucket: str, key: str, content_type: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type = content_type
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        self._upload_id: str | None = None
        self._completed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            self._send_part()

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self._parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer.clear()

    def complete(self) -> None:
        if self._upload_id is None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
            )
        else:
            if self._buffer:
                self._send_part()
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
        self._buffer.clear()
        self._completed = True

    def publish(self) -> None:
        """The completed object is already in place; the database row makes it an export."""

    def discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )
            self._upload_id = None
        if self._completed:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
            self._completed = False


class S3ExportStore:
    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.client = client or s3_client()

    def begin(self, key: str, fmt: str) -> _S3Pending:
        content_type = f"{content_type_of(fmt)}; charset=utf-8"
        return _S3Pending(self.client, self.bucket, key, content_type)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def begin_upload(self, key: str) -> _S3Pending:
        """Sent in parts as it is written (one PutObject when it fits in one part)."""
        _check_upload_key(key)
        return _S3Pending(self.client, self.bucket, key, UPLOAD_CONTENT_TYPE)

    def save_upload(self, key: str, source: BinaryIO, max_bytes: int) -> int:
        return copy_upload(source, self.begin_upload(key), max_bytes)

    def upload_usage(self, owner_id: int) -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{UPLOADS}/{owner_id}/"
        )
        return sum(item["Size"] for page in pages for item in page.get("Contents", []))

    def open_upload(self, key: str) -> BinaryIO:
        _check_upload_key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise UploadMissing(key) from None
        return io.BufferedReader(_BodyReader(body), buffer_size=UPLOAD_CHUNK)

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        return sum(
            self._discard_prefix(prefix)
            for prefix in (task_prefix(fmt, task_id), legacy_task_prefix(owner_id, fmt, task_id))
        )

    def _discard_prefix(self, prefix: str) -> int:
        removed = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                removed += 1
        for uploads in self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for upload in uploads.get("Uploads", []):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                removed += 1
        return removed

    def list_keys(self) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def presigned_url(self, key: str, fmt: str, export_id: int, expires: int) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": (
                    f'attachment; filename="{download_name(fmt, export_id)}"'
                ),
            },
            ExpiresIn=expires,
        )


def _check_upload_key(key: str) -> None:
    if not is_upload_key(key):
        raise ValueError(f"not an upload key: {key!r}")


class _BodyReader(io.RawIOBase):
    """An S3 object's body as a raw stream, so it can be buffered and decoded like a file."""

    def __init__(self, body: StreamingBody) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()
