"""Property-based run of the OpenAPI document against a real `booklogr-tasks api` process:
no 5xx, and every response conforms to the document (status, headers, content type, schema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import tasks
from booklogr_tasks.db.pool import connect
from booklogr_tasks.http import routes as api
from booklogr_tasks.jobs import known_types
from booklogr_tasks.worker.runner import Runner
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.support import api_process, mint_token
from tests.helpers import insert_task, seed_books, throwaway_database

pytestmark = pytest.mark.slow

schema = schemathesis.openapi.from_dict(api.openapi_document())
USER = 5


@schema.auth()
class BookLogrToken:
    """The caller's token, applied by schemathesis itself so that its auth checks (missing or
    invalid credentials must be refused) still send requests without it."""

    def get(self, case: Any, context: Any) -> str:
        return mint_token(USER)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def _seed(url: str, export_folder: Path) -> None:
    """Some of the caller's tasks (fresh, failed, finished export) and someone else's."""
    with connect(url, autocommit=True) as conn:
        seed_books(conn, owner_id=USER, count=3)
        for owner in (USER, USER, 6):
            insert_task(conn, "csv_export", {"owner_id": owner}, owner)
        failed = insert_task(conn, "csv_export", {"owner_id": USER}, USER)
        tasks.claim_task(conn, failed, "seed", known_types())
        tasks.fail_task(conn, failed, "seed", "failed on purpose")
        export = insert_task(conn, "csv_export", {"owner_id": USER}, USER)
    settings = Settings(database_url=url, export_folder=export_folder)
    assert Runner(settings, "seed").run_by_id(export) == "success"


@pytest.fixture(scope="module")
def api_url(
    pg_server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("schemathesis")
    settings = {
        # Uploads answer 202 at once: no listener runs here, nothing would finish the import.
        "UPLOAD_WAIT_SECONDS": "0",
        # A line for every request, successful ones included (they are DEBUG lines): the run
        # is checked to have reached the routes with a valid token.
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }
    with throwaway_database(pg_server_url, template_db) as url:
        _seed(url, folder / "exports")
        with api_process(url, folder, settings) as running:
            yield running.base
            _assert_authenticated_requests_succeeded(running.proc.log())


def _assert_authenticated_requests_succeeded(log: str) -> None:
    """Guard against a run that only ever saw 401s (a broken token would still 'conform')."""
    seen = set()
    for line in log.splitlines():
        if line.startswith("{") and '"message":"request"' in line:
            entry = json.loads(line)
            seen.add((entry["route"], entry["status"]))
    for expected in [
        ("POST /v1/tasks", 202),
        ("GET /v1/tasks", 200),
        ("GET /v1/exports", 200),
        ("GET /v1/files", 200),
    ]:
        assert expected in seen, f"no {expected} in the run: {sorted(seen)}"


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case: Any, api_url: str) -> None:
    case.call_and_validate(base_url=api_url, timeout=30)


# --- the same document against the Chalice app itself (the Lambda face) ----------------------

# Checks that look only at the answer; the ones that send more requests need a network transport.
CHALICE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]


@pytest.fixture
def chalice_client(env: dict[str, str], db_url: str, export_folder: Path, client: Any) -> Any:
    _seed(db_url, export_folder)
    return client


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_chalice_app_conforms_to_its_document(case: Any, chalice_client: Any) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://chalice.test")
    prepared = requests.Request(**kwargs).prepare()
    url = urlsplit(prepared.url)
    body = prepared.body or b""
    answer = chalice_client.request(
        prepared.method,
        url.path + (f"?{url.query}" if url.query else ""),
        headers=dict(prepared.headers),
        body=body.encode() if isinstance(body, str) else body,
    )
    response = Response(
        status_code=answer.status_code,
        headers={k: [v] for k, v in answer.headers.items()},
        content=answer.body,
        request=prepared,
        elapsed=0.0,
        verify=True,
    )
    case.validate_response(response, checks=CHALICE_CHECKS)
