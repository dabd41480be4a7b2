"""What functions/app.py and the production server (http/asgi.py) agree on.

The Chalice app runs in two places: on Lambda behind API Gateway, and in the threads of
`booklogr-tasks api`. A few things differ, and the app asks this module instead of guessing:
- `under_server()`: the current thread is one of the server's handler threads. Then the server
  writes the request's log line (it also answers requests the app never sees) and streams files.
- `log_request(...)`: that line, written the same way by both.
- `SEND_FILE_HEADER`: a view that answers with a file on this machine's disk puts its path in this
  header and leaves the body empty; the server strips the header and streams the file in chunks.
  Only a view can set it (the server never copies request headers into an answer), and the path
  comes from the database, never from the request.
- `body_limit("setting")`: a route whose bodies are bounded by another setting than
  MAX_BODY_BYTES (an upload route); the server enforces it while reading.
- `public(view)`: a route anyone may call. The server checks the `Authorization` header of every
  other route before it reads a request's body, so nobody unauthenticated can make it hold one.
- `creates_task(view)`: a route that creates a task for its caller; the server refuses a body
  for a caller at the per-user cap before reading it.
- `streamed_upload(view)`: a multipart upload route; the server streams the file from the socket
  to the store and the view gets `received_upload()` instead of a body.
- `verified_user(authorization)`: the user the server already authenticated for the request this
  thread is running (that check, http/auth.py's, is not repeated by the view).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from booklogr_tasks.core.observability import logger
from booklogr_tasks.http.multipart import StoredUpload

SEND_FILE_HEADER = "X-Booklogr-Tasks-Send-File"
PUBLIC_ATTRIBUTE = "booklogr_tasks_public"
BODY_LIMIT_ATTRIBUTE = "booklogr_tasks_body_limit"
CREATES_TASK_ATTRIBUTE = "booklogr_tasks_creates_task"
STREAMED_UPLOAD_ATTRIBUTE = "booklogr_tasks_streamed_upload"

F = TypeVar("F", bound=Callable[..., object])

_thread = threading.local()


def mark_server_thread() -> None:
    """Called once in each of the server's handler threads (the thread pool's initializer)."""
    _thread.under_server = True


def under_server() -> bool:
    return bool(getattr(_thread, "under_server", False))


def log_request(status: int, started: float, route: str | None = None) -> None:
    """The line of one answered request (`started`: its time.perf_counter() on arrival): at INFO
    when the answer is an error (status 400 and up), at DEBUG otherwise. What a successful
    request did that matters has its own line at INFO (task created, task retried, import
    uploaded); the rest are reads, mostly BookLogr's web app polling a task or the file list,
    which at one line each would bury those lines. POWERTOOLS_LOG_LEVEL=DEBUG shows every
    request."""
    level = logging.INFO if status >= 400 else logging.DEBUG
    if logger.log_level > level:
        return
    extra: dict[str, object] = {} if route is None else {"route": route}
    extra["status"] = status
    extra["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    if level == logging.INFO:
        logger.info("request", extra=extra)
    else:
        logger.debug("request", extra=extra)


@contextmanager
def handed_over(
    authorization: str | None, user_id: int | None, upload: StoredUpload | None = None
) -> Iterator[None]:
    """While the app runs one request in this thread: the server authenticated `authorization`
    (the request's header value) as `user_id` (None: it did not check), and stored the
    request's upload (None: there is none)."""
    _thread.verified = None if user_id is None else (authorization, user_id)
    _thread.upload = upload
    try:
        yield
    finally:
        _thread.verified = None
        _thread.upload = None


def verified_user(authorization: str | None) -> int | None:
    """The user id the server authenticated this very header value as for the request this
    thread is running; None when it did not (on Lambda, a GET, a public route)."""
    known: tuple[str | None, int] | None = getattr(_thread, "verified", None)
    if known is None or known[0] != authorization:
        return None
    return known[1]


def received_upload() -> StoredUpload | None:
    """The upload the server streamed to the store for the request this thread is running."""
    return getattr(_thread, "upload", None)


def on_lambda() -> bool:
    """Running in AWS Lambda, where CloudWatch reads metrics from the log stream."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def public(view: F) -> F:
    """Mark a view that needs no token (health, the OpenAPI document)."""
    setattr(view, PUBLIC_ATTRIBUTE, True)
    return view


def is_public(view: object) -> bool:
    return bool(getattr(view, PUBLIC_ATTRIBUTE, False))


def body_limit(setting: str) -> Callable[[F], F]:
    """Mark a view whose bodies may be as large as the setting named here (a field of
    core.settings.Settings holding a byte count, e.g. an upload limit) instead of
    MAX_BODY_BYTES. The server enforces it while the body arrives."""

    def mark(view: F) -> F:
        setattr(view, BODY_LIMIT_ATTRIBUTE, setting)
        return view

    return mark


def body_limit_setting(view: object) -> str:
    """The name of the setting that bounds this view's request bodies."""
    return str(getattr(view, BODY_LIMIT_ATTRIBUTE, "max_body_bytes"))


def creates_task(view: F) -> F:
    setattr(view, CREATES_TASK_ATTRIBUTE, True)
    return view


def is_creating(view: object) -> bool:
    return bool(getattr(view, CREATES_TASK_ATTRIBUTE, False))


def streamed_upload(view: F) -> F:
    setattr(view, STREAMED_UPLOAD_ATTRIBUTE, True)
    return view


def is_streamed_upload(view: object) -> bool:
    return bool(getattr(view, STREAMED_UPLOAD_ATTRIBUTE, False))


__all__ = [
    "SEND_FILE_HEADER",
    "body_limit",
    "body_limit_setting",
    "creates_task",
    "handed_over",
    "is_creating",
    "is_public",
    "is_streamed_upload",
    "mark_server_thread",
    "on_lambda",
    "public",
    "received_upload",
    "streamed_upload",
    "under_server",
    "verified_user",
]


def port_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on host:port (a sentence), or None when it can. Binds as
    granian does, so a port another program holds is named before the server starts."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use by another program"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None
