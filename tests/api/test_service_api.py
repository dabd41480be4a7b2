"""Health, the OpenAPI document, the catch-all for unexpected errors, metrics, task functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.http import routes as api
from booklogr_tasks.jobs import REGISTRY, known_types
from booklogr_tasks.worker import runner

from tests.api.support import FUNCTIONS, bearer
from tests.helpers import insert_task, task_row


@pytest.fixture
def database_down(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1; a short wait keeps the test quick.
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    monkeypatch.setattr(api, "DB_WAIT_SECONDS", 0.3)
    get_settings.cache_clear()


def test_healthz_is_ok_when_the_database_answers(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok"}


def test_an_unreachable_database_is_503_everywhere_not_500(
    client: Any, database_down: None
) -> None:
    calls = [
        ("GET", "/healthz", b""),
        ("POST", "/v1/tasks", b'{"type": "csv_export"}'),
        ("GET", "/v1/tasks", b""),
        ("GET", "/v1/tasks/1", b""),
        ("POST", "/v1/tasks/1/retry", b""),
        ("GET", "/v1/exports", b""),
        ("GET", "/v1/exports/csv/1", b""),
    ]
    for method, path, body in calls:
        response = client.request(
            method, path, headers={**bearer(5), "Content-Type": "application/json"}, body=body
        )
        assert response.status_code == 503, (path, response.body)
        assert json.loads(response.body)["error"] == "unavailable"
        assert response.headers["Retry-After"]


def test_unexpected_errors_are_a_json_500_without_traceback(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api, "task_status", explode)
    response = client.get("/v1/tasks/1", headers=bearer(5))
    assert response.status_code == 500
    body = json.loads(response.body)
    assert body["error"] == "internal" and set(body) == {"error", "message"}
    assert b"Traceback" not in response.body and b"secret internals" not in response.body


def test_openapi_document_matches_the_routes_and_the_registry(client: Any, app_module: Any) -> None:
    response = client.get("/openapi.json")  # no token needed
    assert response.status_code == 200
    doc = json.loads(response.body)

    documented = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    # OPTIONS (CORS preflights) exists on every path; the document leaves it out.
    routed = {
        (path, m)
        for path, entries in app_module.app.routes.items()
        for m in entries
        if m != "OPTIONS"
    }
    assert documented == routed
    schemas = doc["components"]["schemas"]
    assert schemas["TaskType"]["enum"] == known_types()
    variants = schemas["CreateTask"]["oneOf"]
    assert [v["properties"]["type"]["enum"] for v in variants] == [[t] for t in known_types()]
    for variant in variants:
        assert "owner_id" not in variant["properties"]["data"]["properties"]


def test_committed_document_is_the_one_served_apart_from_the_registry_parts() -> None:
    from importlib import resources

    committed = json.loads(
        resources.files("booklogr_tasks.http").joinpath("openapi.json").read_text("utf-8")
    )
    served = api.openapi_document()
    assert _without_formats(committed["paths"]) == _without_formats(served["paths"])
    assert committed["openapi"].startswith("3.")


def _without_formats(paths: dict[str, Any]) -> dict[str, Any]:
    """The paths without what the registered export formats fill in (the download's format
    parameter and content types)."""
    paths = json.loads(json.dumps(paths))
    download = paths["/v1/exports/{format}/{id}"]["get"]
    (param,) = [p for p in download["parameters"] if p["name"] == "format"]
    del param["schema"]["enum"], param["description"]
    del download["responses"]["200"]["content"]
    return paths


def test_metrics_are_not_printed_outside_lambda(
    client: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    headers = {**bearer(5), "Content-Type": "application/json"}
    assert (
        client.post("/v1/tasks", headers=headers, body=b'{"type":"csv_export"}').status_code == 202
    )
    assert client.get("/v1/tasks/999", headers=headers).status_code == 404
    assert '"_aws"' not in capsys.readouterr().out


def test_metrics_count_created_tasks_per_type_and_errors_per_status(
    client: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On Lambda, where CloudWatch reads the EMF lines from the log.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "booklogr-tasks-dev")
    headers = {**bearer(5), "Content-Type": "application/json"}
    assert (
        client.post("/v1/tasks", headers=headers, body=b'{"type":"csv_export"}').status_code == 202
    )
    assert client.get("/v1/tasks/999", headers=headers).status_code == 404

    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    created = [m for m in emitted if "TasksCreated" in m]
    errors = [m for m in emitted if "ApiErrors" in m]
    assert [m["task_type"] for m in created] == ["csv_export"]
    assert [m["status"] for m in errors] == ["404"]


def test_there_is_one_task_function_per_registered_type(app_module: Any) -> None:
    names = sorted(f.name for f in app_module.app.pure_lambda_functions)
    assert names == sorted(REGISTRY)


def test_a_task_function_runs_the_task_it_is_given(
    env: dict[str, str], app_module: Any, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalice.test import Client

    # The runner is per process (a Lambda container keeps it); this test wants a fresh one.
    monkeypatch.setattr(runner, "_default_runner", None)
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    with Client(app_module.app, stage_name="local", project_dir=str(FUNCTIONS)) as c:
        result = c.lambda_.invoke("csv_export", {"task_id": task_id})
        assert result.payload == {
            "task_id": task_id,
            "task_type": "csv_export",
            "status": "success",
        }
        with pytest.raises(ValueError, match="task_id"):
            c.lambda_.invoke("csv_export", {"id": task_id})
    assert task_row(conn, task_id)["status"] == "success"
    monkeypatch.setattr(runner, "_default_runner", None)
