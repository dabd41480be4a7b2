"""http/asgi.py driven directly (no socket, no database): a Chalice app of its own routes is
served without any change to the server, bodies are bounded per route, nothing is read before
the caller is known, and a body arrives at a minimum rate or not at all."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.http.asgi import Api
from booklogr_tasks.http.serving import (
    body_limit,
    mark_server_thread,
    public,
    verified_user,
)
from chalice import Chalice, Response
from chalice.local import LocalChalice

SECRET = "unit-secret-key-of-sufficient-length-0123456789"


class UploadSettings(Settings):
    max_upload_bytes: int = 1000


def make_app() -> Any:
    app = Chalice(app_name="unit", configure_logs=False)

    @app.route("/echo/{name}", methods=["POST"])
    def echo(name: str) -> Response:
        request = app.current_request
        assert request is not None
        return Response(body={"name": name, "size": len(request.raw_body)})

    @app.route("/upload", methods=["POST"], content_types=["application/octet-stream"])
    @body_limit("max_upload_bytes")
    def upload() -> Response:
        request = app.current_request
        assert request is not None
        return Response(body={"size": len(request.raw_body)})

    @app.route("/whoami", methods=["POST", "GET"])
    def whoami() -> Response:
        request = app.current_request
        assert request is not None
        return Response(body={"user": verified_user(request.headers.get("authorization"))})

    @app.route("/open", methods=["POST"])
    @public
    def open_route() -> Response:
        return Response(body={"ok": True})

    app.__class__ = LocalChalice  # as http/dispatch.py's load_app does
    return app


def call(
    api: Api,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    pause: float = 0.0,
    client: str = "127.0.0.1",
    stall: bool = False,
) -> tuple[int, dict[str, str], bytes, int]:
    """One request, its body in pieces of 100 bytes `pause` seconds apart (`stall`: then
    nothing more, without an end); also how many body messages the app pulled before it
    started its answer."""
    sent: list[dict[str, Any]] = []
    pulled = 0
    pulled_before_answer: int | None = None
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)] or [b""]

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > 1 and pause:
            await asyncio.sleep(pause)
        if not chunks:
            await asyncio.sleep(3600)  # a client that sends nothing more
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": stall or bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal pulled_before_answer
        if pulled_before_answer is None:
            pulled_before_answer = pulled
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body and not any(k == b"content-length" for k, _ in raw_headers):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw_headers,
        "client": (client, 1),
    }
    asyncio.run(api(scope, receive, send))
    start = sent[0]
    answer = b"".join(m.get("body", b"") for m in sent[1:])
    head = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert pulled_before_answer is not None
    return start["status"], head, answer, pulled_before_answer


def make_api(**settings: Any) -> Api:
    values = {"auth_secret_key": SECRET, "max_body_bytes": 300, **settings}
    return Api(make_app(), UploadSettings(**values), Threads(2, "test", mark_server_thread))


def token() -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"id": 3, "exp": 2**40}, SECRET, "HS256")}


def test_any_route_of_the_app_is_served_with_its_parameters() -> None:
    status, headers, body, _ = call(
        make_api(),
        "POST",
        "/echo/%C3%A9t%C3%A9",
        b"{}",
        {**token(), "Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body) == {"name": "été", "size": 2}
    assert headers["content-type"] == "application/json"


def test_the_default_body_limit_and_a_routes_own() -> None:
    api = make_api()
    octet = {**token(), "Content-Type": "application/octet-stream"}
    status, _, body, _ = call(api, "POST", "/echo/x", b"x" * 301, {**token()})
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
    status, _, body, _ = call(api, "POST", "/upload", b"x" * 900, octet)
    assert status == 200 and json.loads(body) == {"size": 900}
    status, _, _, _ = call(api, "POST", "/upload", b"x" * 1001, octet)
    assert status == 413


def test_no_body_is_read_before_the_caller_is_known() -> None:
    api = make_api()
    status, headers, body, pulled = call(api, "POST", "/echo/x", b"{}" * 10)
    assert status == 401 and pulled == 0
    # A body within the route's limit is read (and dropped) after the answer, so the answer
    # reaches a client still sending it; a larger one is not, and its connection is closed.
    assert "connection" not in headers
    assert json.loads(body)["error"] == "unauthorized"
    status, headers, body, pulled = call(api, "POST", "/echo/x", b"{}" * 200)
    assert (status, pulled, headers["connection"]) == (401, 0, "close")
    # A public route reads its body without a token.
    status, _, _, pulled = call(api, "POST", "/open", b"{}", {"Content-Type": "application/json"})
    assert status == 200 and pulled == 1


def test_unknown_routes_and_methods_are_json() -> None:
    api = make_api()
    status, _, body, _ = call(api, "GET", "/nowhere")
    assert status == 404 and set(json.loads(body)) == {"error", "message"}
    status, headers, body, _ = call(api, "GET", "/upload")
    assert status == 405 and headers["allow"] == "OPTIONS, POST"
    status, headers, _, _ = call(api, "OPTIONS", "/upload", headers={"Origin": "http://x"})
    assert status == 204 and headers["access-control-allow-origin"] == "*"


def test_the_view_is_told_the_caller_the_server_checked_before_the_body() -> None:
    api = make_api()
    json_body = {**token(), "Content-Type": "application/json"}
    status, _, body, _ = call(api, "POST", "/whoami", b"{}", json_body)
    assert status == 200 and json.loads(body) == {"user": 3}
    # No body, no check by the server: the view authenticates by itself.
    status, _, body, _ = call(api, "GET", "/whoami", headers=token())
    assert status == 200 and json.loads(body) == {"user": None}
    # Only for the request being run, and only for that header's value.
    assert verified_user(token()["Authorization"]) is None


def test_an_error_escaping_the_app_in_its_thread_becomes_a_json_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("boom in a handler thread")

    api = make_api()
    monkeypatch.setattr(api, "_call", broken)
    status, headers, body, _ = call(api, "POST", "/echo/x", b"{}", token())
    assert status == 500 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "internal"
    assert b"boom" not in body
    monkeypatch.undo()
    # The same threads serve the next request.
    status, _, body, _ = call(api, "POST", "/echo/x", b"{}", token())
    assert status == 200 and json.loads(body) == {"name": "x", "size": 2}


def test_a_body_to_a_route_that_takes_none_is_refused_unread() -> None:
    api = make_api()
    status, headers, body, pulled = call(api, "GET", "/whoami", b"x" * 250, token())
    assert status == 400 and pulled == 0
    assert headers["connection"] == "close"
    assert "take no body" in json.loads(body)["message"]
    # Unknown routes and wrong methods read nothing either, and close.
    for method, path in (("POST", "/nowhere"), ("DELETE", "/upload")):
        status, headers, _, pulled = call(api, method, path, b"x" * 250, token())
        assert status in (404, 405) and pulled == 0 and headers["connection"] == "close"


def test_a_body_slower_than_the_minimum_rate_is_cut_with_408() -> None:
    api = make_api(api_body_grace_seconds=0.2, api_min_body_rate_bytes=1000)
    octet = {**token(), "Content-Type": "application/octet-stream"}
    # 100 bytes every 0.15 s is under 1000 bytes/s: cut once the grace period has passed.
    status, headers, body, pulled = call(api, "POST", "/upload", b"x" * 900, octet, 0.15)
    assert status == 408 and json.loads(body)["error"] == "request_timeout"
    assert headers["connection"] == "close" and pulled < 9
    # The same body at full speed is read.
    status, _, body, _ = call(api, "POST", "/upload", b"x" * 900, octet)
    assert status == 200 and json.loads(body) == {"size": 900}


def test_a_body_that_stops_arriving_is_cut_with_408() -> None:
    api = make_api(api_request_timeout_seconds=0.2)
    headers = {**token(), "Content-Type": "application/json", "Content-Length": "250"}
    status, _, body, _ = call(api, "POST", "/echo/x", b"{", headers, stall=True)
    assert status == 408 and json.loads(body)["error"] == "request_timeout"


def test_one_address_has_a_bounded_number_of_requests_in_progress() -> None:
    api = make_api(api_max_requests_per_client=2)
    api.in_progress["10.9.9.9"] = 2  # two requests of that address are running
    status, headers, body, pulled = call(api, "POST", "/echo/x", b"{}", token(), client="10.9.9.9")
    assert status == 429 and pulled == 0
    assert headers["connection"] == "close" and headers["retry-after"] == "1"
    assert json.loads(body)["error"] == "too_many_requests"
    # Another address is served, and its request is no longer counted once answered.
    status, _, _, _ = call(api, "POST", "/echo/x", b"{}", token(), client="10.9.9.8")
    assert status == 200 and "10.9.9.8" not in api.in_progress
