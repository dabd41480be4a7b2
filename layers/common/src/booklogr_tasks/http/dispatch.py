"""The Chalice app of functions/ as a plain callable for the production server.

Nothing here knows a route: the route table is the app's own (`app.routes`), so every route added
to functions/app.py is served without a change here. A request becomes the API Gateway proxy
event the app gets on Lambda (the shape chalice.local builds), and the app's answer comes back as
API Gateway's response dict; the app's middleware, views and error mapping run unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.http.serving import verified

STAGE = "local"
# Set it when the package is installed somewhere the repository's functions/ is not beside it.
FUNCTIONS_DIR_ENV = "BOOKLOGR_TASKS_FUNCTIONS_DIR"
_MODULE_NAME = "booklogr_tasks_functions_app"


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


def stage_environment(project: Path, stage: str = STAGE) -> dict[str, str]:
    """The environment variables the Chalice config gives the stage (as `chalice local` does)."""
    config = json.loads((project / ".chalice" / "config.json").read_text("utf-8"))
    values = dict(config.get("environment_variables", {}))
    values.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {str(k): str(v) for k, v in values.items()}


def load_app(project: Path) -> Any:
    """functions/app.py's `app`, with per-thread request state (see `per_thread_requests`).
    The stage's variables fill in what the environment does not set, before the app's imports
    read them."""
    for key, value in stage_environment(project).items():
        os.environ.setdefault(key, value)
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, project / "app.py")
    if spec is None or spec.loader is None:
        raise SettingsError(f"cannot load {project / 'app.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    per_thread_requests(app)
    return app


def per_thread_requests(app: Any) -> None:
    """Chalice keeps the request being handled in ONE attribute of the app (`current_request`):
    enough on Lambda (one request per process at a time), but with several handler threads a
    view would read another thread's request, i.e. act for another user. The app's class becomes
    a subclass whose `current_request` and `lambda_context` are per thread."""
    if getattr(type(app), "_booklogr_per_thread", False):
        return
    state = threading.local()

    def slot(name: str) -> property:
        return property(
            lambda self: getattr(state, name, None),
            lambda self, value: setattr(state, name, value),
        )

    cls = type(app)
    app.__class__ = type(
        f"PerThread{cls.__name__}",
        (cls,),
        {
            "current_request": slot("current_request"),
            "lambda_context": slot("lambda_context"),
            "_booklogr_per_thread": True,
        },
    )
    for name in ("current_request", "lambda_context"):
        app.__dict__.pop(name, None)


@dataclass(frozen=True)
class Match:
    route: str  # the route's pattern, e.g. /v1/tasks/{id}
    params: dict[str, str]
    methods: frozenset[str]
    entries: dict[str, Any]  # method → the app's RouteEntry


class RouteTable:
    """The app's routes, matched the way API Gateway does: a literal segment beats a
    `{parameter}`, a trailing slash is ignored, a parameter is one whole (decoded) segment."""

    def __init__(self, routes: dict[str, dict[str, Any]]) -> None:
        # By number of segments, each list sorted as chalice.local sorts them: '/a/b' comes
        # before '/a/{x}' ('{' sorts last).
        self._routes: dict[int, list[tuple[str, list[str], dict[str, Any]]]] = {}
        for pattern, entries in sorted(routes.items()):
            parts = pattern.split("/")
            self._routes.setdefault(len(parts), []).append((pattern, parts, entries))

    def match(self, segments: list[str]) -> Match | None:
        for pattern, parts, entries in self._routes.get(len(segments), ()):
            params: dict[str, str] = {}
            for want, got in zip(parts, segments, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return Match(pattern, params, frozenset(entries), entries)
        return None


def split_path(raw_path: bytes) -> list[str] | None:
    """The path's segments, each percent-decoded on its own (so an encoded `/` stays inside
    its segment); None when the path is not valid UTF-8 or not absolute."""
    if not raw_path.startswith(b"/"):
        return None
    if raw_path != b"/" and raw_path.endswith(b"/"):
        raw_path = raw_path[:-1]
    try:
        if b"%" not in raw_path:  # nothing to decode (the common case)
            return raw_path.decode("utf-8").split("/")
        return [unquote_to_bytes(part).decode("utf-8") for part in raw_path.split(b"/")]
    except UnicodeDecodeError:
        return None


def build_event(
    *,
    method: str,
    match: Match,
    path: str,
    query_string: bytes,
    headers: dict[str, str],
    body: bytes | None,
    source_ip: str,
) -> dict[str, Any]:
    """The API Gateway proxy event of this request (as chalice.local builds it)."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    return {
        "requestContext": {
            "httpMethod": method,
            "resourcePath": match.route,
            "identity": {"sourceIp": source_ip},
            "path": path,
            "stage": STAGE,
        },
        "headers": headers,
        "pathParameters": match.params or None,
        "multiValueQueryStringParameters": query or None,
        "stageVariables": {},
        "body": body,
        "isBase64Encoded": False,
    }


def call(app: Any, event: dict[str, Any], user_id: int | None = None) -> dict[str, Any]:
    """Run the app on one event, in the calling thread; API Gateway's response dict.
    `user_id`: the server already authenticated the event's `authorization` header as this user
    (serving.verified_user tells the view so)."""
    with verified(event["headers"].get("authorization"), user_id):
        response: dict[str, Any] = app(event, None)
    return response


__all__ = [
    "STAGE",
    "Match",
    "RouteTable",
    "build_event",
    "call",
    "functions_dir",
    "load_app",
    "per_thread_requests",
    "split_path",
    "stage_environment",
]
