"""POST/GET /v1/tasks, GET /v1/tasks/{id}, POST /v1/tasks/{id}/retry through chalice.test.Client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from booklogr_tasks.core.models import ImportPayload
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.db import tasks
from booklogr_tasks.jobs import REGISTRY, JobSpec, Outcome, known_types
from booklogr_tasks.storage import export_store

from tests.api.support import bearer, error_of
from tests.helpers import insert_task, task_row

JSON = {"Content-Type": "application/json"}
TASK_KEYS = {
    "id",
    "type",
    "status",
    "worker",
    "created_at",
    "updated_on",
    "created_by",
    "error",
    "result",
    "progress",
    "attempts",
    "run_after",
}


def post_task(client: Any, body: Any, user: int = 5, raw: bytes | None = None, **headers: str):
    payload = raw if raw is not None else json.dumps(body).encode()
    return client.post("/v1/tasks", headers={**bearer(user), **JSON, **headers}, body=payload)


def claimed(conn: Any, task_id: int, worker: str = "w") -> None:
    assert tasks.claim_task(conn, task_id, worker, known_types()) is not None


# --- POST /v1/tasks ----------------------------------------------------------------------------


def test_create_answers_202_and_stores_the_task_for_the_caller(client: Any, conn: Any) -> None:
    response = post_task(client, {"type": "csv_export", "data": {}})

    assert response.status_code == 202
    body = json.loads(response.body)
    task_id = body["task_id"]
    # The reader's toast speaks of their library; the id is in task_id and Location.
    assert body["status"] == "fresh" and body["message"] == (
        "Your CSV export has started; it will appear under Available exports in a few seconds."
    )
    assert response.headers["Location"] == f"/v1/tasks/{task_id}"
    assert int(response.headers["Retry-After"]) >= 1
    row = task_row(conn, task_id)
    assert (row["type"], row["status"], row["created_by"]) == ("csv_export", "fresh", 5)
    assert json.loads(row["data"]) == {"owner_id": 5}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "csv_export"},
        {"type": "csv_export", "data": {"owner_id": 5}},
        {"type": "csv_export", "data": '{"owner_id": 5}'},
        {"type": "csv_export", "data": "{}"},
    ],
    ids=["no-data", "own-owner-id", "json-string", "empty-json-string"],
)
def test_create_accepts_data_as_object_string_or_absent(client: Any, conn: Any, body: Any) -> None:
    response = post_task(client, body)
    assert response.status_code == 202, response.body
    row = task_row(conn, json.loads(response.body)["task_id"])
    assert json.loads(row["data"]) == {"owner_id": 5}


@pytest.mark.parametrize(
    "owner_id", [6, "5", True, 5.0, None], ids=["other", "string", "bool", "float", "null"]
)
def test_create_refuses_someone_elses_owner_id(client: Any, owner_id: Any) -> None:
    response = post_task(client, {"type": "csv_export", "data": {"owner_id": owner_id}}, user=1)
    body = error_of(response, 422)
    assert "data.owner_id" in body["message"]


def test_unknown_type_is_422_listing_the_known_types(client: Any) -> None:
    body = error_of(post_task(client, {"type": "pdf_export", "data": {}}), 422)
    assert body["error"] == "unknown_type"
    assert "'pdf_export'" in body["message"]
    for known in known_types():
        assert known in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {}}, "type"),
        ({"type": 7}, "type"),
        ({"type": "csv_export", "data": {"shelf": 1}}, "data.shelf"),
        ({"type": "csv_export", "data": 5}, "data"),
        ({"type": "csv_export", "data": "not json"}, "data"),
        ({"type": "csv_export", "data": "[1, 2]"}, "data"),
        ({"type": "csv_export", "extra": 1}, "extra"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(client: Any, body: Any, field: str) -> None:
    message = error_of(post_task(client, body), 422)["message"]
    assert message.startswith(f"{field}:") or f"{field}:" in message, message


def test_payload_model_of_the_type_validates_data(
    client: Any, monkeypatch: pytest.MonkeyPatch, conn: Any
) -> None:
    spec = JobSpec(
        task_type="test_import",
        payload_model=ImportPayload,
        run=lambda ctx, payload: Outcome(),
        summary="an import for this test",
    )
    monkeypatch.setitem(REGISTRY, "test_import", spec)

    missing = error_of(post_task(client, {"type": "test_import", "data": {}}), 422)
    assert "exactly one of csv" in missing["message"]
    wrong = error_of(post_task(client, {"type": "test_import", "data": {"csv": 3}}), 422)
    assert "data.csv" in wrong["message"]

    ok = post_task(client, {"type": "test_import", "data": {"csv": "title\nA"}})
    assert ok.status_code == 202
    row = task_row(conn, json.loads(ok.body)["task_id"])
    # The file's text is stored as an upload; the task names it.
    data = json.loads(row["data"])
    assert data == {"owner_id": 5, "csv": None, "file": data["file"], "allow_duplicates": False}
    assert data["file"].startswith("uploads/5/")
    with export_store(get_settings()).open_upload(data["file"]) as stored:
        assert stored.read() == b"title\nA"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[1, 2]", b'"csv_export"', b"null", b"\xff\xfe", b"[" * 100_000],
    ids=["broken", "empty", "array", "string", "null", "not-utf8", "deeply-nested"],
)
def test_malformed_body_is_400(client: Any, raw: bytes) -> None:
    assert error_of(post_task(client, None, raw=raw), 400)["error"] == "bad_request"


def test_body_over_the_limit_is_413(
    client: Any, monkeypatch: pytest.MonkeyPatch, conn: Any
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "100")
    get_settings.cache_clear()
    big = json.dumps({"type": "csv_export", "data": {"pad": "x" * 200}}).encode()

    assert error_of(post_task(client, None, raw=big), 413)["error"] == "payload_too_large"
    # A declared length over the limit is refused without looking at the body at all.
    declared = post_task(client, None, raw=b"{not even json", **{"Content-Length": "5000"})
    error_of(declared, 413)
    error_of(post_task(client, None, raw=b"{}", **{"Content-Length": "lots"}), 400)
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_wrong_content_type_is_415_in_the_error_shape(client: Any) -> None:
    response = client.post(
        "/v1/tasks", headers={**bearer(5), "Content-Type": "text/plain"}, body=b"{}"
    )
    assert error_of(response, 415)["error"] == "unsupported_media_type"


def test_unsupported_method_is_405_in_the_error_shape(client: Any) -> None:
    response = client.request("DELETE", "/v1/tasks", headers=bearer(5))
    assert error_of(response, 405)["error"] == "method_not_allowed"


# --- GET /v1/tasks/{id} ------------------------------------------------------------------------


def test_get_task_shows_the_contract_fields_and_asks_to_poll(client: Any, conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)

    response = client.get(f"/v1/tasks/{task_id}", headers=bearer(5))

    assert response.status_code == 200
    body = json.loads(response.body)
    assert set(body) == TASK_KEYS
    assert body["id"] == task_id and body["status"] == "fresh" and body["created_by"] == 5
    assert body["result"] is None and body["error"] is None and body["worker"] is None
    assert int(response.headers["Retry-After"]) >= 1


def test_finished_task_has_its_result_and_no_retry_after(client: Any, conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    claimed(conn, task_id)
    result = {"export_id": 3, "format": "csv", "download": "/v1/exports/csv/3"}
    assert tasks.finish_task(conn, task_id, "w", result)

    response = client.get(f"/v1/tasks/{task_id}", headers=bearer(5))

    body = json.loads(response.body)
    assert body["status"] == "success" and body["worker"] == "w"
    assert body["result"] == result and body["attempts"] == 1
    assert "Retry-After" not in response.headers


def test_failed_task_shows_its_error(client: Any, conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    claimed(conn, task_id)
    assert tasks.fail_task(conn, task_id, "w", "the file is broken")
    body = json.loads(client.get(f"/v1/tasks/{task_id}", headers=bearer(5)).body)
    assert (body["status"], body["error"], body["result"]) == (
        "failure",
        "the file is broken",
        None,
    )


@pytest.mark.parametrize(
    "path_id",
    [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "9223372036854775808",
        "%20",
        "\N{FULLWIDTH DIGIT ONE}",
    ],
)
def test_ids_that_cannot_exist_are_404(client: Any, path_id: str) -> None:
    for method, path in (("GET", f"/v1/tasks/{path_id}"), ("POST", f"/v1/tasks/{path_id}/retry")):
        response = client.request(method, path, headers={**bearer(5), **JSON})
        assert error_of(response, 404)["error"] == "not_found"


def test_absent_and_other_users_tasks_are_the_same_404(client: Any, conn: Any) -> None:
    theirs = insert_task(conn, "csv_export", {"owner_id": 6}, 6)
    absent = theirs + 1000
    for task_id in (theirs, absent):
        got = error_of(client.get(f"/v1/tasks/{task_id}", headers=bearer(5)), 404)
        assert got == {"error": "not_found", "message": f"there is no task '{task_id}'"}
    assert client.get(f"/v1/tasks/{theirs}", headers=bearer(6)).status_code == 200


# --- POST /v1/tasks/{id}/retry -----------------------------------------------------------------


def test_retry_puts_a_failed_task_back_to_fresh(client: Any, conn: Any) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    claimed(conn, task_id)
    tasks.fail_task(conn, task_id, "w", "boom")

    response = client.post(f"/v1/tasks/{task_id}/retry", headers=bearer(5))

    assert response.status_code == 202
    assert json.loads(response.body)["task_id"] == task_id
    assert response.headers["Location"] == f"/v1/tasks/{task_id}"
    row = task_row(conn, task_id)
    assert (row["status"], row["error"], row["worker"]) == ("fresh", None, None)


def test_retry_of_a_task_that_has_not_failed_is_409(client: Any, conn: Any) -> None:
    fresh = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    done = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    claimed(conn, done)
    tasks.finish_task(conn, done, "w", None)
    for task_id, status in ((fresh, "fresh"), (done, "success")):
        body = error_of(client.post(f"/v1/tasks/{task_id}/retry", headers=bearer(5)), 409)
        assert body["error"] == "conflict" and status in body["message"]
    assert task_row(conn, done)["status"] == "success"


def test_retry_of_a_failed_task_booklogr_runs_itself_is_409_and_changes_nothing(
    client: Any, conn: Any
) -> None:
    # As BookLogr's API writes its own tasks: data a Python repr without owner_id, no worker.
    row = conn.execute(
        "INSERT INTO tasks (type, data, status, created_by, error) "
        "VALUES ('csv_export', '{}', 'failure', 5, 'BookLogr says no') RETURNING id"
    ).fetchone()
    body = error_of(client.post(f"/v1/tasks/{row['id']}/retry", headers=bearer(5)), 409)
    assert body["error"] == "conflict" and "BookLogr" in body["message"]
    after = task_row(conn, row["id"])
    assert (after["status"], after["error"], after["attempts"]) == (
        "failure",
        "BookLogr says no",
        0,
    )


def test_retry_of_another_users_task_is_404(client: Any, conn: Any) -> None:
    theirs = insert_task(conn, "csv_export", {"owner_id": 6}, 6)
    claimed(conn, theirs)
    tasks.fail_task(conn, theirs, "w", "boom")
    error_of(client.post(f"/v1/tasks/{theirs}/retry", headers=bearer(5)), 404)
    error_of(client.post(f"/v1/tasks/{theirs + 99}/retry", headers=bearer(5)), 404)
    assert task_row(conn, theirs)["status"] == "failure"


# --- GET /v1/tasks -----------------------------------------------------------------------------


def test_list_is_the_callers_tasks_newest_first_in_pages(client: Any, conn: Any) -> None:
    mine = [insert_task(conn, "csv_export", {"owner_id": 5}, 5) for _ in range(5)]
    insert_task(conn, "csv_export", {"owner_id": 6}, 6)

    seen: list[int] = []
    path = "/v1/tasks?limit=2"
    pages = 0
    while True:
        page = json.loads(client.get(path, headers=bearer(5)).body)
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        if page["next_before"] is None:
            break
        path = f"/v1/tasks?limit=2&before={page['next_before']}"
    assert seen == sorted(mine, reverse=True)
    assert pages == 3


def test_list_has_no_next_page_when_the_last_one_is_exactly_full(client: Any, conn: Any) -> None:
    for _ in range(2):
        insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    page = json.loads(client.get("/v1/tasks?limit=2", headers=bearer(5)).body)
    assert len(page["items"]) == 2 and page["next_before"] is None


def test_list_of_a_user_without_tasks_is_empty(client: Any) -> None:
    response = client.get("/v1/tasks", headers=bearer(5))
    assert response.status_code == 200
    assert json.loads(response.body) == {"items": [], "next_before": None}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "before=0", "before=-3", "before=x"]
)
def test_bad_paging_parameters_are_400(client: Any, query: str) -> None:
    body = error_of(client.get(f"/v1/tasks?{query}", headers=bearer(5)), 400)
    assert query.split("=")[0] in body["message"]


@pytest.mark.parametrize("path", ["/v1/tasks?page=2", "/v1/exports?before=3"])
def test_unknown_query_parameters_are_400(client: Any, path: str) -> None:
    body = error_of(client.get(path, headers=bearer(5)), 400)
    assert "unknown query parameter" in body["message"]
