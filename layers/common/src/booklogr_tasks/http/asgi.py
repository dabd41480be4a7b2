"""The API as an ASGI application: the HTTP-level work here, each route's behaviour in the app.

Before a request reaches the Chalice app of functions/ (in a handler thread, API_THREADS):
- one client address has at most API_MAX_REQUESTS_PER_CLIENT requests in progress (429);
- the request line and headers fit API_MAX_HEADER_BYTES (414, 431); the server bounds the head's
  size and arrival time itself (http/server.py);
- chalice.local's RouteMatcher and LambdaEventConverter find the route in the app's own table and
  make the event API Gateway would (404, 405 + Allow);
- a body only where a route takes one (POST, PUT, PATCH): elsewhere it is refused unread (400);
- where a route takes one: the token (401), the per-user cap (429), the declared size (413) and,
  for an upload, the user's quota (413), all before one byte of it is read; then it is read with
  its limit enforced as it arrives (413) and a minimum rate (408);
- an upload's file goes from the socket to the store as it arrives; the view is told where;
- a view's file answer (serving.SEND_FILE_HEADER) is sent from disk by the server (pathsend).
Every refusal is JSON `{"error", "message"}` with CORS headers, and closes the connection when the
request's body was not read. None echoes a request header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeVar
from urllib.parse import unquote

from chalice.local import LambdaEventConverter, RouteMatcher

from booklogr_tasks.core.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    TooManyRequests,
    UriTooLong,
)
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.db.pool import close_pools
from booklogr_tasks.http import cors, files, routes
from booklogr_tasks.http.auth import ensure_not_revoked, verify_token
from booklogr_tasks.http.multipart import StoredUpload
from booklogr_tasks.http.serving import (
    SEND_FILE_HEADER,
    body_limit_setting,
    handed_over,
    is_creating,
    is_public,
    is_streamed_upload,
    log_request,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

# No route of the API needs a longer URL.
MAX_URL_BYTES = 8 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SEND_FILE = SEND_FILE_HEADER.lower()


class _Disconnected(Exception):
    """The client went away; there is nobody to answer."""


class Api:
    """`Api(app, settings, threads)` is the ASGI callable the server runs; `threads` are the
    handler threads that run the app (a Chalice app, synchronous)."""

    def __init__(self, app: Any, settings: Settings, threads: Threads) -> None:
        self.app = app
        self.settings = settings
        self.threads = threads
        self.events = LambdaEventConverter(RouteMatcher(list(app.routes)), app.api.binary_types)
        self.origins = settings.cors_origin_list
        self.all_methods = cors.allowed_methods({m for e in app.routes.values() for m in e})
        self.in_progress: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        exchange = _Exchange(send, self.origins, self.all_methods)
        client = str((scope.get("client") or ("-",))[0])
        if self.in_progress[client] >= self.settings.api_max_requests_per_client:
            limit = self.settings.api_max_requests_per_client
            await exchange.error(
                TooManyRequests(f"your address already has {limit} requests in progress"),
                close=True,
            )
        else:
            self.in_progress[client] += 1
            try:
                await self._handle(scope, receive, exchange)
            except _Disconnected:
                exchange.status = 499  # nginx's code for "client closed the request"
            except Exception:
                logger.exception("unhandled error in the HTTP server")
                if not exchange.started:
                    await exchange.error(
                        ApiError("an unexpected error occurred; it has been logged")
                    )
            finally:
                self.in_progress[client] -= 1
                if not self.in_progress[client]:
                    del self.in_progress[client]
        log_request(exchange.status, started, f"{scope['method']} {exchange.route}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.threads.shutdown()
                close_pools()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive, exchange: _Exchange) -> None:
        method: str = scope["method"]
        headers = _headers(scope["headers"])
        exchange.origin = headers.get("origin")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string") or b""
        try:
            has_body = self._check_head(raw_path, query, scope["headers"], headers)
        except ApiError as exc:
            await exchange.error(exc, close=True)
            return
        path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        try:
            event = self.events.create_lambda_event(method, path, headers, None)
        except ValueError:
            await exchange.error(
                NotFound("there is no such route; GET /openapi.json lists the API's routes"),
                close=has_body,
            )
            return
        route: str = event["requestContext"]["resourcePath"]
        exchange.route = route
        if event["pathParameters"]:  # decoded, as API Gateway gives them (chalice.local does not)
            event["pathParameters"] = {k: unquote(v) for k, v in event["pathParameters"].items()}
        entries = self.app.routes[route]
        exchange.methods = cors.allowed_methods(entries)
        entry = entries.get(method)
        if method == "OPTIONS" and entry is None:  # a preflight, where the app has no route for it
            allow = cors.preflight_headers(exchange.origin, self.origins, exchange.methods)
            exchange.add_cors = False
            await exchange.respond(204, b"", allow)
            return
        if entry is None:
            allowed = exchange.methods
            refusal = MethodNotAllowed(
                f"this route does not answer {method[:16]}; it answers {allowed}",
                {"Allow": allowed},
            )
            await exchange.error(refusal, close=has_body)
            return
        user, upload = None, None
        if has_body:
            view = entry.view_function
            limit = int(getattr(self.settings, body_limit_setting(view)))
            try:
                user, event["body"], upload = await self._body(
                    method, headers, receive, view, limit, exchange
                )
            except ApiError as exc:
                await self._refuse_body(exc, method, headers, receive, limit, exchange)
                return
        response = await self._in_thread(self._call, event, user, upload)
        await self._answer(response, exchange)

    def _check_head(
        self,
        raw_path: bytes,
        query: bytes,
        raw_headers: Iterable[tuple[bytes, bytes]],
        headers: dict[str, str],
    ) -> bool:
        """Whether the request has a body; an ApiError for a head over its limits."""
        limit = self.settings.api_max_header_bytes
        target = len(raw_path) + len(query)
        if target > min(MAX_URL_BYTES, limit):
            raise UriTooLong(
                f"the URL is longer than the limit of {min(MAX_URL_BYTES, limit)} bytes"
            )
        if target + sum(len(k) + len(v) + 4 for k, v in raw_headers) > limit:
            raise HeadersTooLarge(f"the request line and headers are larger than {limit} bytes")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise BadRequest("the Content-Length header is not a number")
        return (length is not None and int(length) > 0) or "transfer-encoding" in headers

    async def _body(
        self,
        method: str,
        headers: dict[str, str],
        receive: Receive,
        view: Any,
        limit: int,
        exchange: _Exchange,
    ) -> tuple[int | None, bytes, StoredUpload | None]:
        """The caller (when the route needs one), the body, and the upload it held: each check
        that needs no body comes first."""
        if method not in BODY_METHODS:
            raise BadRequest(f"{method} requests to this route take no body")
        declared = int(headers.get("content-length") or 0)
        user, upload = None, is_streamed_upload(view)
        if is_public(view):
            _ensure_within(declared, limit)
        else:
            # The signature on the event loop (cheaper than a trip to a thread and back); the
            # checks that ask the database in one trip to a handler thread, none when no check
            # applies.
            user, jti = verify_token(headers.get("authorization"), self.settings)
            creating = is_creating(view)
            if jti is not None or creating or upload:
                await self._in_thread(
                    self._before_body, user, jti, creating, upload, declared, limit
                )
            else:
                _ensure_within(declared, limit)
        exchange.reading = True
        if user is not None and upload:
            return user, b"", await self._upload(headers, receive, user, limit)
        body = bytearray()
        async for chunk in self._chunks(receive, limit):
            body += chunk
        return user, bytes(body), None

    def _before_body(
        self, user: int, jti: str | None, creating: bool, upload: bool, declared: int, limit: int
    ) -> None:
        """In the order a client is told: the token not revoked by BookLogr's logout (401), room
        under the per-user cap (429), the declared size (413), the upload quota (413)."""
        if jti is not None:
            ensure_not_revoked(self.settings, jti)
        if creating:
            routes.ensure_room(self.settings, user)
        _ensure_within(declared, limit)
        if upload:
            files.ensure_quota(self.settings, user, declared)

    async def _refuse_body(
        self,
        exc: ApiError,
        method: str,
        headers: dict[str, str],
        receive: Receive,
        limit: int,
        exchange: _Exchange,
    ) -> None:
        """Answer a request refused before its body was used. A body the route could have taken
        (a declared length within its limit, not yet being read) is read and dropped after the
        answer: a client, or a proxy that buffered the body, that is still sending it would have
        the answer reset by a connection closed with its bytes unread. Any other is closed."""
        declared = headers.get("content-length")
        if exchange.reading or method not in BODY_METHODS or declared is None:
            await exchange.error(exc, close=True)
            return
        if int(declared) > limit:
            await exchange.error(exc, close=True)
            return
        await exchange.error(exc)
        with contextlib.suppress(ApiError, _Disconnected):
            async for _ in self._chunks(receive, limit):
                pass

    async def _chunks(self, receive: Receive, limit: int) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive: at most `limit` bytes, no pause longer than
        API_REQUEST_TIMEOUT_SECONDS, and at least API_MIN_BODY_RATE_BYTES a second on average
        once it has taken API_BODY_GRACE_SECONDS."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        start, received = loop.time(), 0
        while True:
            slowest = start + max(
                settings.api_body_grace_seconds, received / settings.api_min_body_rate_bytes
            )
            try:
                async with asyncio.timeout_at(
                    min(slowest, loop.time() + settings.api_request_timeout_seconds)
                ):
                    message = await receive()
            except TimeoutError:
                rate, pause = settings.api_min_body_rate_bytes, settings.api_request_timeout_seconds
                raise RequestTimeout(
                    f"the body arrived too slowly: send it at {rate} bytes/s or faster, "
                    f"with no pause of {pause:g} s"
                ) from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _upload(
        self, headers: dict[str, str], receive: Receive, user: int, limit: int
    ) -> StoredUpload:
        """Stream the form's file part to the store as it arrives; its fields in memory."""
        loop = asyncio.get_running_loop()
        sink = files.UploadSink(self.settings, user, headers.get("content-type"), limit)
        try:
            async for chunk in self._chunks(receive, limit):
                await loop.run_in_executor(None, sink.write, chunk)
            return await loop.run_in_executor(None, sink.finish)
        except BaseException:
            await loop.run_in_executor(None, sink.discard)
            raise

    def _call(
        self, event: dict[str, Any], user: int | None, upload: StoredUpload | None
    ) -> dict[str, Any]:
        with handed_over(event["headers"].get("authorization"), user, upload):
            response: dict[str, Any] = self.app(event, None)
        return response

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a handler thread; its result (or exception) back on the loop."""
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
        exchange.add_cors = False  # the app put its own CORS headers on its answer
        send_file = next((name for name in headers if name.lower() == _SEND_FILE), None)
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
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"  # API Gateway's default
        await exchange.respond(status, data, headers)

    async def _send_file(self, path: str, headers: dict[str, str], exchange: _Exchange) -> None:
        try:
            size = (await asyncio.get_running_loop().run_in_executor(None, os.stat, path)).st_size
        except OSError as exc:
            logger.warning("export file missing", extra={"error": type(exc).__name__})
            exchange.add_cors = True  # the server's own answer, not the app's
            await exchange.error(NotFound("the file is no longer available"))
            return
        await exchange.start(200, {**headers, "Content-Length": str(size)})
        await exchange.send({"type": "http.response.pathsend", "path": path})


class _Exchange:
    """One request's answer: status and whether it has started; the CORS headers the server
    adds to its own answers (the app adds its own), from the request's Origin and the methods
    of its route (all the API's before the route is known)."""

    def __init__(self, send: Send, origins: tuple[str, ...], methods: str) -> None:
        self.send = send
        self.status = 0
        self.route = "-"  # the route's pattern, once known
        self.started = False
        self.reading = False  # the request's body is being read
        self.origin: str | None = None
        self.origins = origins
        self.methods = methods
        self.add_cors = True

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.started = status, True
        if self.add_cors:
            headers = {**headers, **cors.cors_headers(self.origin, self.origins, self.methods)}
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def respond(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        await self.start(status, {**headers, "Content-Length": str(len(data))})
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

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


def _ensure_within(declared: int, limit: int) -> None:
    if declared > limit:
        raise _too_large(limit)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")


__all__ = ["Api"]
