"""Where export files live: the store interface, a local folder, or S3 (storage.s3)."""

from __future__ import annotations

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.storage.base import (
    CONTENT_TYPES,
    ExportStore,
    PendingExport,
    download_name,
    export_key,
    upload_key,
)
from booklogr_tasks.storage.local import LocalFolderStore


def export_store(settings: Settings) -> ExportStore:
    """S3 when EXPORT_BUCKET is set, else the local export folder."""
    if settings.export_bucket:
        from booklogr_tasks.storage.s3 import S3ExportStore

        return S3ExportStore(settings.export_bucket)
    return LocalFolderStore(settings.export_folder)


__all__ = [
    "CONTENT_TYPES",
    "ExportStore",
    "LocalFolderStore",
    "PendingExport",
    "download_name",
    "export_key",
    "export_store",
    "upload_key",
]
