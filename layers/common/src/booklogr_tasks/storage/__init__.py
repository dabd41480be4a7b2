"""Where export files live: the store interface, a local folder, or S3 (storage.s3)."""

from __future__ import annotations

from booklogr_tasks.core.settings import Settings
from booklogr_tasks.storage.base import (
    ExportStore,
    PendingExport,
    download_name,
    export_key,
    upload_key,
)
from booklogr_tasks.storage.local import LocalFolderStore


def export_store(settings: Settings, wait_for_writers: bool = True) -> ExportStore:
    """S3 when EXPORT_BUCKET is set, else the local export folder.

    Locally, an attempt that lost its task lets go of its file within a lease (it hears so from
    its heartbeat): with `wait_for_writers` the next attempt's cleanup waits that long for it.
    """
    if settings.export_bucket:
        from booklogr_tasks.storage.s3 import S3ExportStore

        return S3ExportStore(settings.export_bucket)
    grace = settings.task_lease_seconds if wait_for_writers else 0.0
    return LocalFolderStore(settings.export_folder, writer_grace=grace)


__all__ = [
    "ExportStore",
    "LocalFolderStore",
    "PendingExport",
    "download_name",
    "export_key",
    "export_store",
    "upload_key",
]
