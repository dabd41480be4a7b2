"""`booklogr-tasks`: migrate, listen, api, dev, queue."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from booklogr_tasks.core.errors import SchemaOutOfDate, SettingsError
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.worker.wiring import DEFAULT_CONCURRENCY


def _types(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="booklogr-tasks", description="Background tasks (exports, imports) for BookLogr."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or update the database schema (idempotent)")

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

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn, the same app as on Lambda)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    dev = sub.add_parser("dev", help="migrate, then run the API and a listener together")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None, help="API port (default: $PORT or 8000)")
    dev.add_argument(
        "--demo", action="store_true", help="seed a demo library and print a curl walk-through"
    )

    sub.add_parser("queue", help="show what is waiting, running and failed")
    return parser


def cmd_migrate() -> int:
    from booklogr_tasks.db.migrate import migrate

    applied = migrate(get_settings().database_url)
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


def cmd_queue() -> int:
    from booklogr_tasks.devtools.queue_report import print_queue

    print_queue(get_settings().database_url, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "migrate":
            return cmd_migrate()
        if args.command == "listen":
            return cmd_listen(args.types, args.concurrency, args.nickname)
        if args.command == "queue":
            return cmd_queue()
        if args.command == "api":
            from booklogr_tasks.http.server import serve

            return serve(args.host, args.port)
        if args.command == "dev":
            from booklogr_tasks.devtools.dev import run_dev

            return run_dev(args.host, args.port, demo=args.demo)
    except SettingsError as exc:
        print(f"booklogr-tasks: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if isinstance(exc, SchemaOutOfDate):
            print(f"booklogr-tasks: {exc}", file=sys.stderr)
            return 3
        raise
    return 2


if __name__ == "__main__":
    sys.exit(main())
