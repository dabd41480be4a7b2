"""Through the Chalice app (the Lambda face): the per-user cap on unfinished tasks, CORS headers
on every answer and on preflights, and a 415 that says what to send."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

import pytest
from booklogr_tasks.core.errors import PendingCapReached
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import connect
from booklogr_tasks.http import cors

from tests.api.support import bearer
from tests.api.test_files_api import BOOKLOGR_CSV, upload
from tests.helpers import insert_task, task_row

JSON = {"Content-Type": "application/json"}
CREATE = b'{"type": "csv_export"}'


def create(client: Any, user: int = 5) -> Any:
    return client.post("/v1/tasks", headers={**bearer(user), **JSON}, body=CREATE)


def count_tasks(conn: Any, user: int) -> int:
    row = conn.execute("SELECT count(*) AS n FROM tasks WHERE created_by = %s", (user,)).fetchone()
    return int(row["n"])


@pytest.fixture
def cap_of_3(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MAX_PENDING_TASKS_PER_USER", "3")
    get_settings.cache_clear()
    return 3


# --- the per-user cap --------------------------------------------------------------------------


def test_past_the_cap_a_create_is_429_with_retry_after_and_stores_nothing(
    client: Any, conn: Any, cap_of_3: int
) -> None:
    for _ in range(cap_of_3):
        assert create(client).status_code == 202

    refused = create(client)

    assert refused.status_code == 429
    body = json.loads(refused.body)
    assert set(body) == {"error", "message"} and body["error"] == "too_many_tasks"
    assert "3 exports and imports in progress" in body["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert count_tasks(conn, 5) == cap_of_3
    # Another user has a cap of their own.
    assert create(client, user=6).status_code == 202


def test_finished_tasks_do_not_count_towards_the_cap(client: Any, conn: Any, cap_of_3: int) -> None:
    ids = [insert_task(conn, "csv_export", {"owner_id": 5}, 5) for _ in range(cap_of_3)]
    assert create(client).status_code == 429
    conn.execute("UPDATE tasks SET status = 'success' WHERE id = %s", (ids[0],))
    assert create(client).status_code == 202
    conn.execute("UPDATE tasks SET status = 'failure' WHERE id = %s", (ids[1],))
    assert create(client).status_code == 202
    assert create(client).status_code == 429


# As BookLogr's API writes its Mastodon shares: data = str(request.json["data"]), a Python repr.
BOOKLOGR_SHARES = """
INSERT INTO tasks (type, data, status, worker, updated_on, created_by)
SELECT 'share_book_event', format('{''book_id'': %%s, ''note'': ''"owner_id"''}', n), 'started',
       NULL, now() - interval '1 day', %(user)s
  FROM generate_series(1, %(count)s) AS n"""


def test_booklogrs_own_stuck_tasks_never_lock_a_user_out(
    client: Any, conn: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 32 §2: 25 of BookLogr's share tasks stuck in `started` (past the default cap of
    20) do not count; the user's exports and uploads are accepted."""
    monkeypatch.setenv("UPLOAD_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    assert get_settings().max_pending_tasks_per_user < 25
    conn.execute(BOOKLOGR_SHARES, {"user": 5, "count": 25})

    assert create(client).status_code == 202
    uploaded = upload(client, 5, [("file", ("a.csv", BOOKLOGR_CSV.encode())), ("type", "csv")])
    assert uploaded.status_code == 202, uploaded.body
    stuck = conn.execute(
        "SELECT count(*) AS n FROM tasks WHERE created_by = 5 AND type = 'share_book_event'"
        " AND status = 'started'"
    ).fetchone()
    assert stuck["n"] == 25


def retry(client: Any, task_id: int, user: int = 5) -> Any:
    return client.post(f"/v1/tasks/{task_id}/retry", headers=bearer(user))


def test_past_the_cap_a_retry_is_429_with_retry_after_and_changes_nothing(
    client: Any, conn: Any, cap_of_3: int
) -> None:
    """Issue 33 §3: a retry counts toward the cap like a create."""
    failed = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    conn.execute(
        "UPDATE tasks SET status = 'failure', error = 'the disk was full', attempts = 3,"
        " worker = 'w:1', updated_on = now() - interval '1 hour' WHERE id = %s",
        (failed,),
    )
    conn.execute(
        "INSERT INTO task_results (task_id, result) VALUES (%s, '{\"skipped\": 1}')", (failed,)
    )
    pending = [insert_task(conn, "csv_export", {"owner_id": 5}, 5) for _ in range(cap_of_3)]
    before = task_row(conn, failed)

    refused = retry(client, failed)

    assert refused.status_code == 429
    body = json.loads(refused.body)
    assert set(body) == {"error", "message"} and body["error"] == "too_many_tasks"
    assert "3 exports and imports in progress" in body["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert task_row(conn, failed) == before
    assert tasks.get_task(conn, failed).result == {"skipped": 1}

    conn.execute("UPDATE tasks SET status = 'success' WHERE id = %s", (pending[0],))
    assert retry(client, failed).status_code == 202
    assert task_row(conn, failed)["status"] == "fresh"
    assert retry(client, pending[1]).status_code == 409  # not failed: as before


def test_parallel_retries_and_creates_never_pass_the_cap_together(db_url: str, conn: Any) -> None:
    """A user's retries and creates take the same lock: six failed tasks retried and six
    creates, all at once, against a cap of 3: exactly three tasks are unfinished after."""
    failed = [insert_task(conn, "csv_export", {"owner_id": 9}, 9) for _ in range(6)]
    conn.execute("UPDATE tasks SET status = 'failure' WHERE id = ANY(%s)", (failed,))
    ready = threading.Barrier(12, timeout=60)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            with connect(db_url, autocommit=True) as own:
                ready.wait()
                if n < 6:
                    with contextlib.suppress(PendingCapReached):
                        tasks.retry_task(own, failed[n], 9, ["csv_export"], cap=3)
                else:
                    tasks.create_task_under_cap(own, "csv_export", '{"owner_id": 9}', 9, 3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    unfinished = conn.execute(
        "SELECT count(*) AS n FROM tasks WHERE created_by = 9 AND status IN ('fresh', 'started')"
    ).fetchone()
    assert unfinished["n"] == 3


def test_parallel_creates_never_pass_the_cap_together(db_url: str, conn: Any) -> None:
    """Twelve creates of one user on twelve connections, released together, against a cap of
    3: exactly three are stored, however the twelve interleave."""
    workers = 12
    ready = threading.Barrier(workers, timeout=60)
    created: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with connect(db_url) as own:
                own.execute("SELECT 1")  # connected and in a transaction before the release
                ready.wait()
                task = tasks.create_task_under_cap(own, "csv_export", '{"owner_id": 9}', 9, 3)
                own.commit()
                if task is not None:
                    created.append(task.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(created) == 3
    assert count_tasks(conn, 9) == 3


# --- CORS in the Chalice face --------------------------------------------------------------------

BROWSER = "http://localhost:5150"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/tasks", 200),
        ("GET", "/v1/tasks/999", 404),
        ("POST", "/v1/tasks/abc/retry", 404),
        ("GET", "/healthz", 200),
    ],
)
def test_every_answer_carries_cors_headers(
    client: Any, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, headers={**bearer(5), **JSON, "Origin": BROWSER})
    assert response.status_code == status
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers["access-control-allow-origin"] == "*"
    assert "Authorization" in headers["access-control-allow-headers"]
    assert "Content-Type" in headers["access-control-allow-headers"]
    for exposed in ("Location", "Retry-After", "Content-Disposition"):
        assert exposed in headers["access-control-expose-headers"]


def test_errors_before_the_view_carry_cors_too(client: Any) -> None:
    unauthenticated = client.get("/v1/tasks", headers={"Origin": BROWSER})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["Access-Control-Allow-Origin"] == "*"
    wrong_type = client.post(
        "/v1/tasks", headers={**bearer(5), "Content-Type": "text/plain", "Origin": BROWSER}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path", ["/v1/tasks", "/v1/tasks/1", "/v1/tasks/1/retry", "/v1/exports", "/v1/exports/csv/1"]
)
def test_every_route_answers_a_preflight(client: Any, path: str) -> None:
    response = client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": BROWSER,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "OPTIONS" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_cors_origins_limits_who_may_call(
    client: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://books.example, http://localhost:5150")
    get_settings.cache_clear()

    allowed = client.get("/v1/tasks", headers={**bearer(5), "Origin": "https://books.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://books.example"
    assert allowed.headers["Vary"] == "Origin"
    other = client.get("/v1/tasks", headers={**bearer(5), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_module_rules() -> None:
    assert cors.allowed_origin("https://a", ["*"]) == "*"
    assert cors.allowed_origin("https://a", ["https://a"]) == "https://a"
    assert cors.allowed_origin(None, ["https://a"]) is None
    assert cors.allowed_origin("https://b", ["https://a"]) is None
    assert cors.allowed_methods(["POST", "GET"]) == "GET, OPTIONS, POST"


# --- 415 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml"]
)
def test_415_names_what_to_send_and_echoes_nothing(client: Any, content_type: str) -> None:
    response = client.post(
        "/v1/tasks", headers={**bearer(5), "Content-Type": content_type}, body=b"type=csv_export"
    )
    assert response.status_code == 415
    body = json.loads(response.body)
    assert body["error"] == "unsupported_media_type"
    assert "application/json" in body["message"]
    assert content_type not in body["message"]


# --- a connection lost mid-request -----------------------------------------------------------


def test_a_request_whose_connection_broke_before_commit_runs_once_more(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booklogr_tasks.core.errors import ConnectionLost
    from booklogr_tasks.http import routes

    real = routes.list_tasks
    calls: list[int] = []

    def flaky(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionLost("the database connection was lost; try again")
        return real(*args)

    monkeypatch.setattr(routes, "list_tasks", flaky)
    response = client.get("/v1/tasks", headers=bearer(5))
    assert response.status_code == 200 and len(calls) == 2
