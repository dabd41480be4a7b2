"""What the server checks before it reads one byte of a body, with the real app and a real
database: the token (401), then the per-user cap (429), then the declared size (413), and for an
upload the user's upload quota (413). Driven in-process through http/asgi.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.http import auth
from booklogr_tasks.http.asgi import Api
from booklogr_tasks.http.dispatch import functions_dir, load_app
from booklogr_tasks.http.serving import mark_server_thread

from tests.api.support import bearer, booklogr_token
from tests.helpers import insert_task
from tests.unit.test_asgi import call

MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}


@pytest.fixture
def api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("MAX_PENDING_TASKS_PER_USER", "3")
    monkeypatch.setenv("UPLOAD_QUOTA_BYTES", "5000")
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    get_settings.cache_clear()
    threads = Threads(2, "test", initializer=mark_server_thread)
    yield Api(load_app(functions_dir()), get_settings(), threads)
    threads.shutdown()


def refused(api: Api, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    status, _, answer, pulled = call(api, "POST", path, body, headers)
    assert pulled == 0, "the body was read before the answer"
    return status, json.loads(answer)["error"]


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/files"])
def test_token_then_cap_then_size_before_the_body(api: Api, conn: Any, path: str) -> None:
    large = b"x" * 6000  # over MAX_BODY_BYTES and over the upload quota
    kind = MULTIPART if path == "/v1/files" else {"Content-Type": "application/json"}
    assert refused(api, path, large, kind) == (401, "unauthorized")
    for _ in range(3):
        insert_task(conn, "csv_export", {"owner_id": 7}, 7)
    assert refused(api, path, large, {**kind, **bearer(7)}) == (429, "too_many_tasks")
    expected = "upload_quota_exceeded" if path == "/v1/files" else "payload_too_large"
    assert refused(api, path, large, {**kind, **bearer(8)}) == (413, expected)


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/files"])
def test_a_token_revoked_by_booklogr_is_refused_before_the_body(
    api: Api, conn: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """BookLogr's tokens carry a `jti`: its logout's revocation is looked up with the cap (one
    trip to the database's thread), and still answered first."""
    monkeypatch.setattr(auth, "REVOKED_TABLE_RECHECK_SECONDS", 0.0)
    conn.execute("CREATE TABLE revoked_tokens (id serial PRIMARY KEY, jti varchar(120))")
    kind = MULTIPART if path == "/v1/files" else {"Content-Type": "application/json"}
    large = b"x" * 6000
    for _ in range(3):
        insert_task(conn, "csv_export", {"owner_id": 7}, 7)
    signed_out = booklogr_token(7, "a-signed-out-session")
    conn.execute("INSERT INTO revoked_tokens (jti) VALUES ('a-signed-out-session')")
    assert refused(api, path, large, {**kind, **signed_out}) == (401, "unauthorized")
    signed_in = booklogr_token(7, "a-current-session")
    assert refused(api, path, large, {**kind, **signed_in}) == (429, "too_many_tasks")
    expected = "upload_quota_exceeded" if path == "/v1/files" else "payload_too_large"
    assert refused(api, path, large, {**kind, **booklogr_token(8, "x")}) == (413, expected)


def test_stored_uploads_count_toward_the_quota(api: Api, settings: Any) -> None:
    """Each user's stored uploads (the files of imports not yet finished) count: past the
    quota a new upload is refused before its body is read, another user is not."""
    folder = settings.export_folder / "uploads" / "9"
    folder.mkdir(parents=True)
    (folder / ("a" * 32)).write_bytes(b"x" * 4500)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="type"\r\n\r\ncsv\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        b"title,isbn\r\nDune,9780441013593\r\n\r\n--b--\r\n"
    )
    status, error = refused(api, "/v1/files", form + b" " * 500, {**MULTIPART, **bearer(9)})
    assert (status, error) == (413, "upload_quota_exceeded")
    status, _, answer, _ = call(api, "POST", "/v1/files", form, {**MULTIPART, **bearer(10)})
    assert status in (200, 202), answer
