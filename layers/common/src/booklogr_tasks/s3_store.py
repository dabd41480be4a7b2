"""Exports in S3 (EXPORT_BUCKET set): streamed as a multipart upload, so memory stays flat.

The object exists once the upload is completed, before the success transaction commits; if that
transaction does not commit, the object is deleted. Downloads are short-lived presigned URLs.
An upload abandoned by a killed worker is cleaned by the bucket's AbortIncompleteMultipartUpload
rule (infra/) and by the next attempt at the same task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from booklogr_tasks.storage import CONTENT_TYPES, download_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# S3's smallest part size is 5 MiB; 8 MiB keeps the number of requests low for large exports.
PART_SIZE = 8 * 1024 * 1024


def s3_client() -> S3Client:
    return boto3.client("s3")


class _S3Pending:
    def __init__(self, client: S3Client, bucket: str, key: str, fmt: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=f"{CONTENT_TYPES[fmt]}; charset=utf-8"
        )["UploadId"]
        self._completed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            self._flush_part()

    def _flush_part(self) -> None:
        assert self._upload_id is not None
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
        assert self._upload_id is not None
        if self._buffer or not self._parts:
            self._flush_part()
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
        )
        self._upload_id = None
        self._completed = True

    def publish(self) -> None:
        """The completed object is already in place; the database row makes it an export."""

    def discard(self) -> None:
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
        return _S3Pending(self.client, self.bucket, key, fmt)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def discard_leftovers(self, owner_id: int, fmt: str, task_id: int) -> int:
        prefix = f"{owner_id}/{fmt}-{task_id}-"
        removed = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                removed += 1
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        for upload in uploads.get("Uploads", []):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
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
