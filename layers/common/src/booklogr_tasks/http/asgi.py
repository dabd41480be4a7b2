"""The API as an ASGI application: HTTP-level work here, each route's behaviour in the app.

What this layer does itself, before (or instead of) running the Chalice app of functions/:
- unknown route → 404, wrong method → 405 (+ Allow), preflight `OPTIONS` → 204, all with CORS;
- a request with a body on a route that needs a caller: the `Authorization` header is checked
  first (401 before one byte of the body is read; the view is told the result instead of
  checking again, serving.verified_user), then the declared `Content-Length` (413), then
  the body is read with the limit enforced as it arrives (also for chunked bodies) and a timeout
  per read (408), so a request never holds more than MAX_BODY_BYTES;
- the app runs in a bounded thread pool (API_THREADS), one request per thread; a view that
  answers with a file (serving.SEND_FILE_HEADER) gets it streamed in chunks;
- exactly one log line per request.
Every answer is JSON `{"error", "message"}` when it is an error; none echoes a request header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeVar

from booklogr_tasks.core.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UriTooLong,
)
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.http import cors, dispatch
from booklogr_tasks.http.auth import ensure_not_revoked, verify_token
from booklogr_tasks.http.serving import (
    SEND_FILE_HEADER,
    body_limit_setting,
    is_public,
    log_request,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

# Files are sent in pieces of this size: memory per download stays at one piece.
FILE_CHUNK = 256 * 1024
# No route of the API needs a longer URL.
MAX_URL_BYTES = 8 * 1024
_SEND_FILE = SEND_FILE_HEADER.lower()


class _Disconnected(Exception):
    """The client went away; there is nobody to answer."""


class Api:
    """`Api(app, settings, threads)` is the ASGI callable uvicorn serves; `threads` are the
    handler threads (API_THREADS) that run the app."""

    def __init__(self, app: Any, settings: Settings, threads: Threads) -> None:
        self.app = app
        self.settings = settings
        self.threads = threads
        self.routes = dispatch.RouteTable(app.routes)
        self.origins = settings.cors_origin_list
        every = {m for entries in app.routes.values() for m in entries}
        self.all_methods = cors.allowed_methods(every)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets
        started = time.perf_counter()
        exchange = _Exchange(send, self.origins, self.all_methods)
        route = "-"
        try:
            route = await self._handle(scope, receive, exchange)
        except _Disconnected:
            exchange.status = 499  # nginx's code for "client closed the request"
        except Exception:
            logger.exception("unhandled error in the HTTP server")
            if not exchange.started:
                await exchange.error(ApiError("an unexpected error occurred; it has been logged"))
        log_request(exchange.status, started, f"{scope['method']} {route}")

    async def _handle(self, scope: Scope, receive: Receive, exchange: _Exchange) -> str:
        method: str = scope["method"]
        headers = _headers(scope["headers"])
        exchange.origin = headers.get("origin")
        # The protocol (http/server.py) bounds a head that arrives in pieces; one that arrives
        # in a single read is measured here.
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        limit = self.settings.api_max_header_bytes
        if target > min(MAX_URL_BYTES, limit):
            await exchange.error(
                UriTooLong(f"the URL is longer than the limit of {min(MAX_URL_BYTES, limit)} bytes")
            )
            return "-"
        if target + sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > limit:
            await exchange.error(
                HeadersTooLarge(f"the request line and headers are larger than {limit} bytes")
            )
            return "-"
        segments = dispatch.split_path(scope.get("raw_path") or scope["path"].encode())
        match = None if segments is None else self.routes.match(segments)
        if match is None:
            await exchange.error(
                NotFound("there is no such route; GET /openapi.json lists the API's routes")
            )
            return "-"
        methods = cors.allowed_methods(match.methods)
        exchange.methods = methods
        if method == "OPTIONS" and "OPTIONS" not in match.methods:
            # A preflight, or a client asking what the route allows.
            allow = cors.preflight_headers(headers.get("origin"), self.origins, methods)
            exchange.add_cors = False
            await exchange.respond(204, b"", {**allow, "Content-Length": "0"})
            return match.route
        entry = match.entries.get(method)
        if entry is None:
            await exchange.error(
                MethodNotAllowed(
                    f"this route does not answer {method[:16]}; it answers {methods}",
                    {"Allow": methods},
                )
            )
            return match.route
        view = entry.view_function
        limit = int(getattr(self.settings, body_limit_setting(view)))
        read = await self._body(headers, receive, exchange, is_public(view), limit)
        if read is None:
            return match.route
        body, user = read
        event = dispatch.build_event(
            method=method,
            match=match,
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=body,
            source_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
        )
        response = await self._in_thread(dispatch.call, self.app, event, user)
        await self._answer(response, exchange)
        return match.route

    async def _body(
        self,
        headers: dict[str, str],
        receive: Receive,
        exchange: _Exchange,
        public: bool,
        limit: int,
    ) -> tuple[bytes, int | None] | None:
        """The request's body and, when the token was checked before it was read, the caller's
        user id; None when the request was refused (the answer is already sent)."""
        length_text = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length_text is None and not chunked:
            return b"", None
        try:
            length = None if length_text is None else int(length_text)
        except ValueError:
            bad = BadRequest("the Content-Length header is not a number")
            await exchange.error(bad, close=True)
            return None
        if length == 0 and not chunked:
            return b"", None
        user = None
        if not public:
            try:
                user = await self._authenticate(headers.get("authorization"))
            except ApiError as exc:
                await exchange.error(exc, close=True)
                return None
        if length is not None and length > limit:
            await exchange.error(_too_large(limit), close=True)
            return None
        body = bytearray()
        timeout = self.settings.api_request_timeout_seconds
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for makes a task per read.
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                await exchange.error(
                    RequestTimeout(f"the body did not arrive; nothing came for {timeout:g} s"),
                    close=True,
                )
                return None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            body += message.get("body", b"")
            if len(body) > limit:
                await exchange.error(_too_large(limit), close=True)
                return None
            if not message.get("more_body", False):
                return bytes(body), user

    async def _authenticate(self, authorization: str | None) -> int:
        """http/auth.py's `authenticate`, with the signature check on the event loop (a few
        tens of microseconds of CPU, cheaper than handing it to a thread and back) and only a
        token with a `jti` handed to a handler thread: its look-up in BookLogr's
        revoked_tokens is a database round trip the event loop must not wait on."""
        user, jti = verify_token(authorization, self.settings)
        if jti is not None:
            await self._in_thread(ensure_not_revoked, self.settings, jti)
        return user

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a handler thread; its result (or exception) back on the loop.
        The loop's run_in_executor would make a concurrent.futures.Future per call and wrap it
        in an asyncio one; this is a future and one call_soon_threadsafe."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def call() -> None:
            try:
                result = function(*args)
            except BaseException as exc:  # delivered to the awaiting request, as it would be
                _settle_from_thread(loop, future, None, exc)
            else:
                _settle_from_thread(loop, future, result, None)

        self.threads.submit(call)
        return await future

    async def _answer(self, response: dict[str, Any], exchange: _Exchange) -> None:
        status = int(response["statusCode"])
        headers: dict[str, str] = {}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        headers.update(response.get("headers") or {})
        send_file, typed = None, False
        for name in headers:
            lower = name.lower()
            if lower == _SEND_FILE:
                send_file = name
            elif lower == "content-type":
                typed = True
        exchange.add_cors = False  # the app put its own CORS headers on its answer
        if send_file is not None:
            path = headers.pop(send_file)
            if status == 200:
                await self._send_file(path, headers, exchange)
                return
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if not typed:
            headers["Content-Type"] = "application/json"  # API Gateway's default
        await exchange.respond(status, data, headers)

    async def _send_file(self, path: str, headers: dict[str, str], exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        try:
            handle = await loop.run_in_executor(None, open, path, "rb")
        except OSError as exc:
            logger.warning("export file missing", extra={"error": type(exc).__name__})
            exchange.add_cors = True  # the server's own answer, not the app's
            await exchange.error(NotFound("the file is no longer available"))
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            await exchange.start(200, {**headers, "Content-Length": str(size)})
            left = size
            while left > 0:
                chunk = await loop.run_in_executor(None, handle.read, min(FILE_CHUNK, left))
                if not chunk:
                    break  # the file shrank under us; the client sees a short body
                left -= len(chunk)
                await exchange.body(chunk, more=left > 0)
            if left > 0:
                await exchange.body(b"", more=False)


class _Exchange:
    """One request's answer: status and whether it has started; the CORS headers the server
    adds to its own answers (the app adds its own), from the request's Origin and the methods
    of its route (all the API's before the route is known)."""

    def __init__(self, send: Send, origins: tuple[str, ...], methods: str) -> None:
        self._send = send
        self.status = 0
        self.started = False
        self.origin: str | None = None
        self.origins = origins
        self.methods = methods
        self.add_cors = True

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.started = status, True
        if self.add_cors:
            headers = {**headers, **cors.cors_headers(self.origin, self.origins, self.methods)}
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _raw_headers(headers.items()),
            }
        )

    async def body(self, data: bytes, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        await self.start(status, {**headers, "Content-Length": str(len(data))})
        await self.body(data, more=False)

    async def error(self, exc: ApiError, *, close: bool = False) -> None:
        """The error's JSON; `close` when the request's body was not read: the connection
        cannot carry another request after it."""
        data = json.dumps(exc.body(), separators=(",", ":")).encode("utf-8")
        headers = {**exc.headers, "Content-Type": "application/json"}
        if close:
            headers["Connection"] = "close"
        await self.respond(exc.status, data, headers)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; a header sent twice becomes one comma-joined value (as API Gateway's
    `headers` does with the last one; joining loses less)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _raw_headers(items: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Names keep their usual capitals (http/server.py makes uvicorn send them as given): HTTP
    # does not care, but some clients' code looks headers up in a plain dict.
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]


def _settle_from_thread(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[T],
    result: T | None,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the request was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    # A closed loop raises: the server is gone, and nobody awaits the answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")


__all__ = ["FILE_CHUNK", "Api"]
