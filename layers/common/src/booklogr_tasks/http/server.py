"""`booklogr-tasks api`: the Chalice app of functions/ under uvicorn, a production ASGI server.

The same app.py that runs on Lambda answers every request (http/dispatch.py); http/asgi.py does
the HTTP-level work around it. uvicorn runs with the httptools protocol (llhttp, in C: h11's
pure-Python parsing and writing took most of the event loop's time per request), subclassed
here so that the answers uvicorn gives by itself (malformed HTTP, a request head over the size
limit, too many connections) are JSON like every other answer, so that a request head is bounded
in size (llhttp has no limit of its own), and so that a client that sends a request head too
slowly is cut off (uvicorn's own timer covers only idle keep-alive connections).

Bounds, all from the environment (core/settings.py): API_THREADS handler threads, at most
API_MAX_CONNECTIONS connections (503 past it), an accept backlog of API_BACKLOG, request heads of
at most API_MAX_HEADER_BYTES (431), API_REQUEST_TIMEOUT_SECONDS for a request to arrive,
API_KEEP_ALIVE_SECONDS of idle keep-alive.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

import psycopg
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.supervisors import Multiprocess

from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.db.migrate import check_schema
from booklogr_tasks.db.pool import close_pools, connect, get_pool
from booklogr_tasks.http import cors
from booklogr_tasks.http.asgi import Api
from booklogr_tasks.http.auth import ensure_configured
from booklogr_tasks.http.dispatch import functions_dir, load_app
from booklogr_tasks.http.serving import mark_server_thread


def check_schema_if_reachable(database_url: str) -> None:
    """SchemaOutOfDate (naming the command to run) when migrations are missing. A database that
    does not answer yet is no reason to refuse: the API answers 503 until it does."""
    try:
        with connect(database_url) as conn:
            check_schema(conn)
    except psycopg.OperationalError as exc:
        logger.warning(
            "database not reachable at start; serving 503 until it is", extra={"error": str(exc)}
        )


def _json_answer(status: int, code: str, message: str, origins: tuple[str, ...]) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for the protocol's own refusals
    (there is no parsed request, so no Origin: CORS only when any origin is allowed)."""
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    if cors.ANY in origins:
        headers += cors.cors_headers(None, origins, "GET, POST, OPTIONS").items()
    reason = {400: "Bad Request", 431: "Request Header Fields Too Large"}.get(status, "Error")
    if status == 503:
        reason = "Service Unavailable"
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


class _Capture(asyncio.Transport):
    """Stands in for the connection's transport while uvicorn writes part of an answer."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self.data = data
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _names_as_given(head: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The head with each header name spelt as the app gave it (uvicorn's httptools protocol
    writes them in lower case)."""
    given = {name.lower(): name for name, _ in headers if name != name.lower()}
    if not given:
        return head
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        name, sep, rest = lines[i].partition(b": ")
        spelt = given.get(name)
        if spelt is not None:
            lines[i] = spelt + sep + rest
    return b"\r\n".join(lines)


class _ResponseCycle(httptools_impl.RequestResponseCycle):
    """uvicorn's request/response cycle, with two changes to how an answer is written; uvicorn
    still decides everything in it (validation, `connection: close`, chunking, lengths):
    - header names are spelt as the app gave them, as h11 did: HTTP does not care, but some
      clients' code looks headers up in a plain dict (Python's `dict(response.headers)`);
    - the head goes out together with the first piece of the body, in one write: uvicorn writes
      them apart, two system calls and two TCP segments (the client reads twice) per answer."""

    _head = b""

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            capture = await self._captured(message)
            self._head = _names_as_given(capture.data, message.get("headers", ()))
            return
        if kind != "http.response.body" or not self._head:
            await super().send(message)
            return
        head, self._head = self._head, b""
        capture = await self._captured(message, head)
        if not self.disconnected:
            self.transport.write(capture.data)
        if capture.closed:
            self.transport.close()

    async def _captured(self, message: Any, data: bytes = b"") -> _Capture:
        """What uvicorn writes (after `data`) for this message, and whether it closed."""
        transport, capture = self.transport, _Capture(data)
        self.transport = capture
        try:
            await super().send(message)
        finally:
            self.transport = transport
        return capture


def protocol_class(settings: Settings) -> type[asyncio.Protocol]:
    # The protocol creates each request's cycle from this module-level name.
    setattr(httptools_impl, "RequestResponseCycle", _ResponseCycle)  # noqa: B010
    origins = settings.cors_origin_list
    max_head = settings.api_max_header_bytes
    head_timeout = settings.api_request_timeout_seconds
    too_large = _json_answer(
        431,
        "headers_too_large",
        f"the request line and headers are larger than the limit of {max_head} bytes",
        origins,
    )
    malformed = _json_answer(400, "bad_request", "the request is not valid HTTP/1.1", origins)

    class JsonHttpToolsProtocol(httptools_impl.HttpToolsProtocol):
        """uvicorn's httptools protocol with JSON refusals, a bound on the size of a request
        head and a deadline for each request head."""

        _head_timer: asyncio.TimerHandle | None = None
        _cycle_when_armed: object = None
        # Bytes received since the current request head began, while it is incomplete.
        # llhttp (httptools) has no limit of its own: it hands over the URL and each header
        # only when complete, buffering the pieces, so a head that never ends would grow
        # without bound. Counted per read, so a head may exceed the limit by one read
        # (at most 256 KB) before it is refused; a head that arrives whole in one read is
        # measured exactly by the ASGI app (http/asgi.py).
        _head_bytes = 0
        _in_head = True

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > max_head and not self.transport.is_closing():
                self.transport.write(too_large)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # Whatever the connection sends next is the next request's head.
            self._in_head, self._head_bytes = True, 0

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._cycle_when_armed = self.cycle
            self._head_timer = self.loop.call_later(head_timeout, self._head_deadline)

        def _head_deadline(self) -> None:
            # A request that started since the timer was armed has its head: the app's own
            # timeout covers its body. Otherwise the client is idle or trickling a head.
            # (An idle keep-alive connection is closed earlier, by uvicorn's own timer.)
            if self.cycle is self._cycle_when_armed and not self.transport.is_closing():
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            # uvicorn's text answer says what the parser disliked; ours never echoes the request.
            self.transport.write(malformed)
            self.transport.close()

    return JsonHttpToolsProtocol


async def _service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer past API_MAX_CONNECTIONS, as JSON."""
    body = json.dumps(
        {"error": "unavailable", "message": "the server is at its connection limit; retry soon"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def build_config(
    host: str, port: int, settings: Settings, app: Any, workers: int = 1
) -> uvicorn.Config:
    """One process: `app` is the ASGI app. Several (`workers` > 1): each worker process builds
    its own from `worker_app`, so `app` is the import string of that factory."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(settings) if workers == 1 else f"{__name__}:WorkerProtocol",
        factory=workers > 1,
        workers=workers,
        lifespan="off",
        # uvloop (a dependency where it installs: not on Windows), asyncio's loop without it:
        # measured 15-25 % more requests/s with less CPU per request (README, benchmark 7).
        loop="auto",
        interface="asgi3",
        access_log=False,  # the app writes one line per request itself
        log_config=None,
        server_header=False,
        backlog=settings.api_backlog,
        limit_concurrency=settings.api_max_connections,
        timeout_keep_alive=int(max(1, round(settings.api_keep_alive_seconds))),
        timeout_graceful_shutdown=10,
    )


def _process_setup() -> None:
    """What every serving process needs before its first request."""
    # One JSON line per event, visible at once even when stdout is a pipe or a file (containers).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # uvicorn's own warnings (malformed requests, the connection limit) as plain lines on
    # stderr; the root logger stays untouched, so no event is written twice.
    # psycopg_pool's notes about connections it discards are expected after a database restart
    # (the API replaces them itself): only its errors are worth a line.
    for name, level in (("uvicorn", logging.WARNING), ("psycopg", logging.ERROR)):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
        library_logger = logging.getLogger(name)
        library_logger.handlers[:] = [handler]
        library_logger.setLevel(level)
        library_logger.propagate = False
    # uvicorn answers past limit_concurrency with this module-level app; ours speaks JSON.
    setattr(httptools_impl, "service_unavailable", _service_unavailable)  # noqa: B010


def _build_api(settings: Settings) -> tuple[Api, Threads]:
    # Every handler thread can hold a connection; none ever waits for the pool to grow.
    get_pool(settings.database_url, max_size=max(10, settings.api_threads + 2), autocommit=True)
    app = load_app(functions_dir())
    threads = Threads(settings.api_threads, "api", initializer=mark_server_thread)
    return Api(app, settings, threads), threads


def worker_app() -> Api:
    """The app of one worker process (API_WORKERS > 1); uvicorn calls it in each worker."""
    _process_setup()
    api, _ = _build_api(get_settings())
    return api


def __getattr__(name: str) -> Any:
    # uvicorn's workers import their protocol class by name; it is built from the settings.
    if name == "WorkerProtocol":
        return protocol_class(get_settings())
    raise AttributeError(name)


def serve(host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT; refuses to start when nobody could be authenticated or
    the database's schema is older than this code."""
    settings = get_settings()
    ensure_configured(settings)
    check_schema_if_reachable(settings.database_url)
    _process_setup()
    logger.info(
        "serving the API",
        extra={
            "url": f"http://{host}:{port}",
            "pid": os.getpid(),
            "workers": settings.api_workers,
            "threads": settings.api_threads,
            "max_connections": settings.api_max_connections,
        },
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the handler
    # that was there before it; this one lets the process end normally, with status 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: None)
    if settings.api_workers > 1:
        config = build_config(
            host, port, settings, f"{__name__}:worker_app", workers=settings.api_workers
        )
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    api, threads = _build_api(settings)
    server = uvicorn.Server(build_config(host, port, settings, api))
    try:
        server.run()
    finally:
        threads.shutdown()
        close_pools()
    return 0 if server.started else 1
