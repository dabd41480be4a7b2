"""`booklogr-tasks api`: the Chalice app in functions/ served by `chalice local` (stage `local`).

The same app.py that runs on Lambda runs here, through Chalice's own local server (threaded), so
local and deployed behaviour cannot drift apart.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.db.migrate import check_schema
from booklogr_tasks.db.pool import close_pools, connect
from booklogr_tasks.http.auth import ensure_configured

STAGE = "local"
# Set it when the package is installed somewhere the repository's functions/ is not beside it.
FUNCTIONS_DIR_ENV = "BOOKLOGR_TASKS_FUNCTIONS_DIR"


def functions_dir() -> Path:
    """The Chalice project: $BOOKLOGR_TASKS_FUNCTIONS_DIR, the repository's, or ./functions."""
    given = os.environ.get(FUNCTIONS_DIR_ENV)
    candidates = (
        [Path(given)]
        if given
        else [Path(__file__).resolve().parents[5] / "functions", Path.cwd() / "functions"]
    )
    for folder in candidates:
        if (folder / "app.py").is_file() and (folder / ".chalice" / "config.json").is_file():
            return folder.resolve()
    raise SettingsError(
        f"cannot find the Chalice project (app.py and .chalice/config.json) in "
        f"{', '.join(map(str, candidates))}; set {FUNCTIONS_DIR_ENV}"
    )


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


def serve(host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT; refuses to start when nobody could be authenticated or
    the database's schema is older than this code."""
    settings = get_settings()
    ensure_configured(settings)
    check_schema_if_reachable(settings.database_url)
    project = functions_dir()

    from chalice.cli import create_local_server
    from chalice.cli.factory import CLIFactory
    from chalice.local import ChaliceRequestHandler

    class AnyMethodHandler(ChaliceRequestHandler):
        # Headers and body leave in two writes; with Nagle's algorithm on, a keep-alive
        # client's delayed ACK then stalls every response by ~40 ms.
        disable_nagle_algorithm = True

        # http.server answers methods Chalice's handler does not list (TRACE, QUERY, ...) with
        # an HTML 501; pass them to the app instead, which answers 405 in the API's error shape.
        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):
                return self._generic_handle
            raise AttributeError(name)

    # One JSON line per event, visible at once even when stdout is a pipe or a file (containers).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # Like `chalice local`: the app's log lines go to stdout.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    factory = CLIFactory(str(project), environ=os.environ)
    server = create_local_server(factory, host, port, STAGE)
    handler = server.server.RequestHandlerClass
    assert isinstance(handler, functools.partial)
    server.server.RequestHandlerClass = functools.partial(
        AnyMethodHandler, *handler.args, **handler.keywords
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server.server_close()
        close_pools()
    return 0
