"""`booklogr-tasks`: migrate, listen, api, queue, schedules; dev and token come from devtools."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from booklogr_tasks.cli.database import (
    chosen_database,
    silent,
    to_log,
    to_stderr,
    unreachable,
)
from booklogr_tasks.core.errors import SchemaOutOfDate, SettingsError
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.worker.wiring import DEFAULT_CONCURRENCY


def _types(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="booklogr-tasks", description="Background tasks (exports, imports) for BookLogr."
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="do not say which database is used (for processes `dev` starts, which says it)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="create or update the database schema (idempotent)")
    migrate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep trying to connect for this long while the database is not up yet (default: 0)",
    )

    listen = sub.add_parser("listen", help="run a listener: pick up tasks and run them")
    listen.add_argument(
        "--types",
        type=_types,
        default=None,
        help="comma-separated task types to serve (default: all)",
    )
    listen.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"tasks run at once by this process (default {DEFAULT_CONCURRENCY})",
    )
    listen.add_argument(
        "--nickname", default=None, help="worker nickname (default: WORKER_NICKNAME)"
    )

    api = sub.add_parser("api", help="serve the HTTP API (granian, the same app as on Lambda)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    dev = sub.add_parser("dev", help="migrate, then run the API and a listener together")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None, help="API port (default: $PORT or 8000)")
    dev.add_argument(
        "--demo", action="store_true", help="seed a demo library and print a curl walk-through"
    )

    sub.add_parser("queue", help="show what is waiting, running and failed")
    sub.add_parser("schedules", help="list the export schedules with their next run")

    token = sub.add_parser(
        "token", help="print an access token like BookLogr's, to try the API with curl"
    )
    token.add_argument("--user", type=int, default=1, help="the user id in the token (default 1)")
    token.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help="file holding the signing secret (default: $AUTH_SECRET_KEY, else the one "
        "`booklogr-tasks dev` keeps in .booklogr-tasks/auth-secret)",
    )
    token.add_argument(
        "--hours", type=float, default=None, help="lifetime (default: 120, as BookLogr's)"
    )
    return parser


def wait_for_database(url: str, seconds: float) -> str | None:
    """Try to connect until the database answers; return None then, else the last error.

    A database container may report healthy a moment before it accepts every client, and its
    first boot restarts the server once: a one-shot migration retries instead of failing.
    """
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return None
        except psycopg.OperationalError as exc:
            error = str(exc).strip()
            if time.monotonic() >= deadline:
                return error
            print(f"waiting for the database: {error}", file=sys.stderr, flush=True)
            time.sleep(1.0)


def cmd_migrate(wait_seconds: float) -> int:
    from booklogr_tasks.db.migrate import migrate

    url = get_settings().database_url
    if wait_seconds > 0:
        error = wait_for_database(url, wait_seconds)
        if error is not None:
            print(
                f"booklogr-tasks: the database did not answer within {wait_seconds:g} s: {error}",
                file=sys.stderr,
            )
            return 2
    applied = migrate(url)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_listen(types: list[str] | None, concurrency: int, nickname: str | None) -> int:
    from booklogr_tasks.worker.wiring import build_listener

    listener = build_listener(get_settings(), types, concurrency, nickname)
    stops = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            # A second signal means "now": the lease gives running tasks to another worker.
            os._exit(128 + signum)
        listener.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return listener.run()


def cmd_schedules() -> int:
    from booklogr_tasks.cli.schedules import print_schedules

    print_schedules(get_settings().database_url, sys.stdout)
    return 0


def cmd_queue() -> int:
    from booklogr_tasks.cli.queue import print_queue

    print_queue(get_settings().database_url, sys.stdout)
    return 0


def cmd_token(user_id: int, secret_file: Path | None, hours: float | None) -> int:
    from booklogr_tasks.devtools.home import DEV_HOME, SECRET_FILE, find_home
    from booklogr_tasks.devtools.tokens import (
        DEFAULT_LIFETIME_SECONDS,
        NoSecret,
        mint_token,
        read_secret,
    )

    try:
        secret = read_secret(secret_file, (find_home() or DEV_HOME) / SECRET_FILE)
    except NoSecret as exc:
        print(f"booklogr-tasks token: {exc}", file=sys.stderr)
        return 2
    lifetime = DEFAULT_LIFETIME_SECONDS if hours is None else int(hours * 3600)
    print(mint_token(secret, user_id, lifetime))
    return 0


# The commands that use a database, and so say first which one; servers say it as a log event.
USES_DATABASE = {"migrate", "listen", "api", "queue", "schedules"}
SERVERS = {"listen", "api"}


def run_command(args: argparse.Namespace) -> int:
    if args.command == "migrate":
        return cmd_migrate(args.wait)
    if args.command == "listen":
        return cmd_listen(args.types, args.concurrency, args.nickname)
    if args.command == "queue":
        return cmd_queue()
    if args.command == "schedules":
        return cmd_schedules()
    if args.command == "token":
        return cmd_token(args.user, args.secret_file, args.hours)
    if args.command == "api":
        from booklogr_tasks.http.server import serve

        return serve(args.host, args.port)
    if args.command == "dev":
        from booklogr_tasks.devtools.dev import run_dev

        return run_dev(args.host, args.port, demo=args.demo)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Every error a user can cause ends in one sentence on stderr and a non-zero exit."""
    import psycopg

    args = build_parser().parse_args(argv)
    url = None
    try:
        if args.command not in USES_DATABASE:
            return run_command(args)
        say = silent if args.quiet else to_log if args.command in SERVERS else to_stderr
        with chosen_database(say) as url:
            return run_command(args)
    except SettingsError as exc:
        print(f"booklogr-tasks: {exc}", file=sys.stderr)
        return 2
    except SchemaOutOfDate as exc:
        print(f"booklogr-tasks: {exc}", file=sys.stderr)
        return 3
    except psycopg.OperationalError as exc:
        if url is None:
            raise
        print(f"booklogr-tasks: {unreachable(url, exc)}", file=sys.stderr)
        return 2
