"""`booklogr-tasks api` as a real process (granian): what the server does around the app.

Requests travel over real sockets, some written by hand (bodies that are never sent, broken
HTTP, heads that never end), so the checks are about what the server answers before it reads a
body, not about what a client library would send."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db.pool import connect
from booklogr_tasks.http.serving import SEND_FILE_HEADER
from booklogr_tasks.worker.runner import Runner

from tests.api.support import RunningApi, api_process, mint_token
from tests.helpers import insert_task, seed_books, throwaway_database, wait_until

pytestmark = pytest.mark.slow

BODY_LIMIT = 65536
BROWSER = "http://localhost:5150"


def auth(user: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(user)}"}


@pytest.fixture(scope="module")
def api(
    pg_server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    settings = {
        "MAX_BODY_BYTES": str(BODY_LIMIT),
        "MAX_PENDING_TASKS_PER_USER": "100000",
        "API_REQUEST_TIMEOUT_SECONDS": "2",
        "API_THREADS": "4",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    with (
        throwaway_database(pg_server_url, template_db) as url,
        api_process(url, tmp_path_factory.mktemp("server"), settings) as running,
    ):
        yield running


def raw(api: RunningApi, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as is, read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = _content_length(head)
                if length is not None and len(body) >= length:
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def json_error(status: int, body: bytes, expected: int) -> dict[str, str]:
    assert status == expected, body
    parsed = json.loads(body)
    assert set(parsed) == {"error", "message"}, parsed
    return parsed


# --- concurrency: one request's user is never another's ---------------------------------------


def test_concurrent_requests_of_two_users_never_see_each_other(api: RunningApi) -> None:
    """Two users, eight threads each, create-then-read in a loop through 4 handler threads. With
    one shared `current_request`, a view would now and then read the other user's token."""
    mistakes: list[str] = []

    def user_loop(user: int) -> None:
        session = requests.Session()
        headers = {**auth(user), "Content-Type": "application/json"}
        for _ in range(15):
            created = session.post(
                f"{api.base}/v1/tasks", data=b'{"type": "csv_export"}', headers=headers
            )
            task_id = created.json()["task_id"]
            seen = session.get(f"{api.base}/v1/tasks/{task_id}", headers=headers)
            if seen.status_code != 200 or seen.json()["created_by"] != user:
                mistakes.append(f"user {user} got {seen.status_code} {seen.text[:80]}")
            listed = session.get(f"{api.base}/v1/tasks?limit=5", headers=headers).json()
            if any(item["created_by"] != user for item in listed["items"]):
                mistakes.append(f"user {user} listed another user's task")

    threads = [threading.Thread(target=user_loop, args=(7 + i % 2,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not mistakes, mistakes[:5]
    with connect(api.url) as conn:
        rows = conn.execute(
            "SELECT created_by, data FROM tasks WHERE created_by IN (7, 8)"
        ).fetchall()
    assert len(rows) == 16 * 15
    assert all(json.loads(row["data"])["owner_id"] == row["created_by"] for row in rows)


# --- bodies ------------------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_413_without_sending_the_body(api: RunningApi) -> None:
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint_token(5)}\r\nContent-Length: 12000000000000\r\n\r\n"
    )
    status, headers, body = raw(api, head.encode())
    assert json_error(status, body, 413)["error"] == "payload_too_large"
    assert headers["connection"] == "close"


def test_an_unauthenticated_body_is_refused_before_it_is_sent(api: RunningApi) -> None:
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {250 * 1024 * 1024}\r\n\r\n"
    )
    status, headers, body = raw(api, head.encode())
    assert json_error(status, body, 401)["error"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer")
    forged = head.replace("Host: x", f"Host: x\r\nAuthorization: Bearer {mint_token(5, 'other')}")
    status, _, body = raw(api, forged.encode())
    json_error(status, body, 401)


def _chunked(payload: bytes, size: int = 1000) -> bytes:
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_chunked_bodies_work_and_are_cut_off_at_the_limit(api: RunningApi) -> None:
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint_token(5)}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, headers, body = raw(api, head + _chunked(b'{"type": "csv_export"}', 5))
    assert status == 202, body
    assert headers["location"].startswith("/v1/tasks/")

    too_big = json.dumps({"type": "csv_export", "data": {"pad": "x" * BODY_LIMIT}}).encode()
    status, _, body = raw(api, head + _chunked(too_big))
    assert json_error(status, body, 413)["error"] == "payload_too_large"


def test_a_body_that_stops_arriving_times_out(api: RunningApi) -> None:
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint_token(5)}\r\nContent-Length: 100\r\n\r\n"
        '{"type": '
    )
    status, _, body = raw(api, head.encode())
    assert json_error(status, body, 408)["error"] == "request_timeout"


def test_a_head_that_never_ends_is_cut_off(api: RunningApi) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(1024) == b""  # closed by the server, no answer


# --- every answer JSON, nothing echoed -----------------------------------------------------------


def test_unknown_route_is_404_json_and_echoes_no_header(api: RunningApi) -> None:
    token = mint_token(5)
    response = requests.get(
        f"{api.base}/nope/x", headers={"Authorization": f"Bearer {token}", "Origin": BROWSER}
    )
    assert json_error(response.status_code, response.content, 404)["error"] == "not_found"
    assert token.encode() not in response.content
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_wrong_method_is_405_json_with_allow(api: RunningApi) -> None:
    response = requests.delete(f"{api.base}/v1/tasks", headers={"Origin": BROWSER})
    assert json_error(response.status_code, response.content, 405)["error"] == (
        "method_not_allowed"
    )
    assert response.headers["Allow"] == "GET, OPTIONS, POST"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /v1/tasks/" + b"1" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ],
    ids=["big-header", "long-url"],
)
def test_oversized_requests_get_json(api: RunningApi, request_bytes: bytes, status: int) -> None:
    got, headers, body = raw(api, request_bytes)
    json_error(got, body, status)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"],
    ids=["garbage", "bad-header"],
)
def test_what_is_not_http_is_refused_by_the_server_and_closed(
    api: RunningApi, request_bytes: bytes
) -> None:
    """granian's own answer (no request reached the app, so there is nothing to answer in
    JSON): 400, echoing nothing, and the connection closed."""
    got, headers, body = raw(api, request_bytes)
    assert got == 400 and headers["connection"] == "close"
    assert b"GARBAGE" not in body and b"Bad Header" not in body


def _head_in_pieces(port: int, pieces: int) -> bytes:
    """A head sent in 1 KB pieces, then nothing more."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(pieces):
                sock.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while it arrived
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def test_a_head_larger_than_the_servers_buffer_is_refused_while_it_arrives(api: RunningApi) -> None:
    """The server holds at most its buffer of a head that never ends (64 KB with the default
    API_MAX_HEADER_BYTES of 16 KB): past it, 431 and the connection closed; a head that ends
    within it gets the app's JSON 431 (test_oversized_requests_get_json)."""
    answer = _head_in_pieces(api.port, 200)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]


# --- CORS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tasks/12", "/v1/exports/csv/1", "/healthz"])
def test_preflights_are_answered_for_every_route(api: RunningApi, path: str) -> None:
    response = requests.options(
        f"{api.base}{path}",
        headers={
            "Origin": BROWSER,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_the_servers_own_refusals_carry_cors(api: RunningApi) -> None:
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5150\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
    )
    status, headers, _ = raw(api, head.encode())
    assert status == 401
    assert headers["access-control-allow-origin"] == "*"
    assert "Retry-After" in headers["access-control-expose-headers"]


# --- downloads -----------------------------------------------------------------------------------


def test_a_download_is_streamed_and_never_shows_the_servers_path(api: RunningApi) -> None:
    with connect(api.url, autocommit=True) as conn:
        seed_books(conn, owner_id=5, count=200)
        task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    settings = Settings(database_url=api.url, export_folder=api.folder / "exports")
    assert Runner(settings, "test").run_by_id(task_id) == "success"
    task = requests.get(f"{api.base}/v1/tasks/{task_id}", headers=auth(5)).json()

    response = requests.get(f"{api.base}{task['result']['download']}", headers=auth(5))

    assert response.status_code == 200
    stored = next((api.folder / "exports").rglob("*.csv"))
    assert response.content == stored.read_bytes()
    assert response.headers["Content-Length"] == str(stored.stat().st_size)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert SEND_FILE_HEADER.lower() not in {k.lower() for k in response.headers}
    assert str(api.folder).encode() not in response.content
    other = requests.get(f"{api.base}{task['result']['download']}", headers=auth(6))
    json_error(other.status_code, other.content, 404)


# --- the database going away ---------------------------------------------------------------------


def test_after_the_database_dropped_every_connection_the_next_request_succeeds(
    api: RunningApi,
) -> None:
    for _ in range(3):
        assert requests.get(f"{api.base}/v1/tasks", headers=auth(5)).status_code == 200
    with psycopg.connect(api.url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    assert requests.get(f"{api.base}/v1/tasks", headers=auth(5)).status_code == 200
    assert requests.get(f"{api.base}/healthz").status_code == 200


# --- logs ----------------------------------------------------------------------------------------


def test_one_log_line_per_failed_request_and_no_metric_blobs(api: RunningApi) -> None:
    """At INFO (the fixture's level, the default) a failed request has its line; a successful
    one has none (tests/unit/test_request_lines.py: it has one at DEBUG)."""
    marker = f"/v1/tasks/{uuid.uuid4().int % 10**12}"
    before = api.proc.log().count('"message":"request"')
    for _ in range(3):
        requests.get(f"{api.base}{marker}", headers=auth(5))
        assert requests.get(f"{api.base}/v1/tasks", headers=auth(5)).status_code == 200
    requests.get(f"{api.base}/unknown")
    wait_until(
        lambda: api.proc.log().count('"message":"request"') >= before + 4, what="the log lines"
    )
    log = api.proc.log()
    assert log.count('"message":"request"') == before + 4
    lines = [line for line in log.splitlines() if line.strip()]
    # JSON events, and granian's warnings about the broken requests other tests sent.
    stray = [line for line in lines if not line.startswith(("{", "granian: "))]
    assert not stray, stray[:3]
    assert '"_aws"' not in log
    entries = [json.loads(line) for line in lines if '"message":"request"' in line]
    assert {"route", "status", "duration_ms"} <= set(entries[-1])


def test_the_log_never_shows_a_token(api: RunningApi) -> None:
    token = mint_token(5)
    marker = f"/v1/tasks/{uuid.uuid4().int % 10**12}"
    before = api.proc.log().count('"message":"request"')
    for path in ("/v1/tasks", marker, "/unknown"):  # 200, and two answers that have a line
        requests.get(f"{api.base}{path}", headers={"Authorization": f"Bearer {token}"})
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    requests.get(f"{api.base}/v1/tasks", headers={"Authorization": f"Bearer {forged}"})
    wait_until(
        lambda: api.proc.log().count('"message":"request"') >= before + 3,
        what="the lines of the 404s and the 401",
    )
    log = api.proc.log()
    assert token not in log and forged not in log
    assert token.split(".")[2] not in log and forged.split(".")[2] not in log


def test_several_worker_processes_serve_and_stop_cleanly(api: RunningApi, tmp_path: Path) -> None:
    """API_WORKERS=2: two processes behind one socket, each with its own app and pool."""
    with api_process(api.url, tmp_path, {"API_WORKERS": "2"}) as two:
        base, proc = two.base, two.proc
        for user in (11, 12, 11, 12):
            created = requests.post(
                f"{base}/v1/tasks",
                data=b'{"type": "csv_export"}',
                headers={**auth(user), "Content-Type": "application/json"},
            )
            assert created.status_code == 202
            task = requests.get(f"{base}/v1/tasks/{created.json()['task_id']}", headers=auth(user))
            assert task.json()["created_by"] == user
        assert proc.terminate() == 0, proc.log()


def test_past_its_requests_in_progress_an_address_gets_json_429(
    api: RunningApi, tmp_path: Path
) -> None:
    """API_MAX_REQUESTS_PER_CLIENT=2: requests whose bodies are still arriving fill the two
    places, and the next request of the same address is refused, unread and closed; another
    address is not."""
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint_token(5)}\r\nContent-Length: 1000\r\n\r\n{{"
    ).encode()
    with api_process(api.url, tmp_path, {"API_MAX_REQUESTS_PER_CLIENT": "2"}) as limited:
        port, proc = limited.port, limited.proc
        with contextlib.ExitStack() as stack:
            # Until they hold both places (a request of the address may still be finishing).
            for _ in range(5):
                slow = stack.enter_context(socket.create_connection(("127.0.0.1", port), 30))
                slow.sendall(head)
                time.sleep(0.2)
                if _refused(limited):
                    break
            status, headers, body = raw(limited, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json_error(status, body, 429)["error"] == "too_many_requests"
            assert headers["retry-after"] == "1" and headers["connection"] == "close"
            other = socket.create_connection(("127.0.0.1", port), 30, ("127.0.0.2", 0))
            with other:
                other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert other.recv(65536).startswith(b"HTTP/1.1 200")
        assert proc.terminate() == 0, proc.log()


def _refused(api: RunningApi) -> bool:
    return raw(api, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 429
