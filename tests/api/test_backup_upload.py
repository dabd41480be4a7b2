"""A backup uploaded to POST /v1/files (type `backup`) is restored into the caller's account."""

from __future__ import annotations

import json
from typing import Any

from booklogr_tasks.core.settings import Settings

from tests.api.test_files_api import error_of, upload, waiting, worker  # noqa: F401
from tests.integration.backup_support import backup_text, seed_user


def test_an_uploaded_backup_is_restored_and_a_second_upload_adds_nothing(
    client: Any,
    conn: Any,
    waiting: Settings,  # noqa: F811
) -> None:
    seed_user(conn, 1)
    document = backup_text(waiting, 1).encode()
    parts = [("file", ("backup.json", document)), ("type", "backup")]
    with worker(waiting):
        first = upload(client, 5, parts)
        assert first.status_code == 200, first.body
        assert json.loads(first.body)["message"] == "Imported 2/2 books."
        again = upload(client, 5, parts)
        assert json.loads(again.body)["message"] == "Imported 0/2 books."
        newer = document.replace(b'"version": 1', b'"version": 7', 1)
        refused = upload(client, 5, [("file", ("backup.json", newer)), ("type", "backup")])
    body = error_of(refused, 422)
    assert "version 7, newer than the version 1" in body["message"]
    titles = conn.execute("SELECT title FROM books WHERE owner_id = 5 ORDER BY id").fetchall()
    assert [t["title"] for t in titles] == ["Dune", "No ISBN"]
    fields = conn.execute("SELECT name FROM fields WHERE owner_id = 5 ORDER BY id").fetchall()
    assert [f["name"] for f in fields] == ["Shelf", "Loaned to"]
