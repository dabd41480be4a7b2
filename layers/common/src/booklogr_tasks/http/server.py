"""`booklogr-tasks api`: the Chalice app of functions/ under granian, a production ASGI server.

The same app.py that runs on Lambda answers every request; http/asgi.py does the HTTP-level work
around it. granian (Rust, hyper) is configured only through its public options, each from one
setting (core/settings.py):
- API_WORKERS processes, each with API_THREADS handler threads and its own connection pool;
- API_MAX_CONNECTIONS requests at once per process (the rest wait), an accept queue of
  API_BACKLOG;
- API_REQUEST_TIMEOUT_SECONDS for a request head to arrive, which also ends an idle keep-alive
  connection, and for a worker to finish its requests once told to stop;
- a read buffer of a few times API_MAX_HEADER_BYTES: a head over the setting but within the
  buffer reaches the app, which answers it with JSON 414/431; a larger one is refused by granian
  itself (431) before it can take more memory.
"""

from __future__ import annotations

import io
import logging
import os
import sys

import psycopg
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.core.threads import Threads
from booklogr_tasks.db.migrate import check_schema
from booklogr_tasks.db.pool import connect, get_pool
from booklogr_tasks.http.asgi import Api
from booklogr_tasks.http.auth import ensure_configured
from booklogr_tasks.http.dispatch import functions_dir, load_app
from booklogr_tasks.http.serving import mark_server_thread, port_problem

# granian's own lines (a worker that died, a refused head) go to stderr as plain text, apart
# from the service's JSON lines on stdout.
_PLAIN = {"formatter": "plain", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
_GRANIAN_LOGGING = {
    "formatters": {"plain": {"()": "logging.Formatter", "fmt": "granian: %(message)s"}},
    "handlers": {"console": _PLAIN, "access": _PLAIN},
}


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


def server_options(settings: Settings) -> dict[str, object]:
    """granian's options, from the settings."""
    return {
        "interface": Interfaces.ASGI,
        "http": HTTPModes.http1,
        "websockets": False,
        "workers": settings.api_workers,
        "backlog": settings.api_backlog,
        "backpressure": settings.api_max_connections,
        "http1_settings": HTTP1Settings(
            header_read_timeout=int(settings.api_request_timeout_seconds * 1000),
            max_buffer_size=max(64 * 1024, 4 * settings.api_max_header_bytes),
        ),
        # A worker still busy this long after SIGTERM is killed: stopping never hangs on a
        # request that does not end.
        "workers_kill_timeout": max(1, int(settings.api_request_timeout_seconds)),
        "log_level": LogLevels.warning,
        "log_dictconfig": _GRANIAN_LOGGING,
        "log_access": False,
    }


def create_api() -> Api:
    """The ASGI app of one serving process; granian calls it in each worker."""
    # One JSON line per event, visible at once even when stdout is a pipe or a file (containers).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # psycopg_pool's notes about connections it discards are expected after a database restart
    # (the API replaces them itself): only its errors are worth a line.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    settings = get_settings()
    # Every handler thread can hold a connection; none ever waits for the pool to grow.
    get_pool(settings.database_url, max_size=max(10, settings.api_threads + 2), autocommit=True)
    app = load_app(functions_dir())
    threads = Threads(settings.api_threads, "api", initializer=mark_server_thread)
    return Api(app, settings, threads)


def serve(host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT; refuses to start when nobody could be authenticated or
    the database's schema is older than this code."""
    settings = get_settings()
    ensure_configured(settings)
    problem = port_problem(host, port)
    if problem:
        raise SettingsError(f"{problem}; choose another with --port (make run: PORT={port + 1})")
    check_schema_if_reachable(settings.database_url)
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
    server = Granian(
        f"{__name__}:create_api",
        address=host,
        port=port,
        factory=True,
        **server_options(settings),  # type: ignore[arg-type]
    )
    server.serve()
    return 0
