"""Helpers for the API tests: the Chalice app, tokens like BookLogr's, a free port, the API
as a real process."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests

from tests.helpers import ServiceProcess, service, wait_until

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# The secret the `env` fixture configures (tests/conftest.py).
SECRET = "test-secret-key-of-sufficient-length-0123456789"


def load_app() -> Any:
    """functions/app.py as a module (its directory is not a package)."""
    spec = importlib.util.spec_from_file_location("booklogr_functions_app", FUNCTIONS / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mint_token(
    user_id: Any, secret: str = SECRET, algorithm: str = "HS256", lifetime: float = 3600
) -> str:
    """An access token shaped like BookLogr's: HS256, user id in claim `id`."""
    now = int(time.time())
    return jwt.encode({"id": user_id, "iat": now, "exp": now + lifetime}, secret, algorithm)


def booklogr_token(user_id: int, jti: str, **claims: Any) -> dict[str, str]:
    """An access token with every claim flask-jwt-extended puts in BookLogr's tokens."""
    now = int(time.time())
    payload = {
        "fresh": False,
        "iat": now,
        "jti": jti,
        "type": "access",
        "sub": "reader@example.org",
        "nbf": now,
        "csrf": "c0ffee",
        "exp": now + 5 * 86400,
        "id": user_id,
        "role": "user",
        **claims,
    }
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, 'HS256')}"}


def error_of(response: Any, status: int) -> dict[str, str]:
    """The body of an error answer of this status: `{"error", "message"}`, a message given."""
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert set(body) == {"error", "message"}, body
    assert body["message"]
    return body


def bearer(user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(user_id)}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningApi:
    base: str  # http://127.0.0.1:<port>
    port: int
    url: str  # its database
    folder: Path  # its exports (folder/exports) and its log (folder/api.log)
    proc: ServiceProcess


@contextmanager
def api_process(url: str, folder: Path, settings: dict[str, str]) -> Iterator[RunningApi]:
    """`booklogr-tasks api` on a free port of 127.0.0.1, serving the database at `url` with
    tokens signed with SECRET, exports under folder/exports, no AWS, and `settings` over that;
    once it answers /healthz. Stopped afterwards, also when the block fails."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "EXPORT_FOLDER": str(folder / "exports"),
        "AUTH_SECRET_KEY": SECRET,
        "SINGLE_USER_MODE": "false",
        **settings,
    }
    for key in ("EXPORT_BUCKET", "CORS_ORIGINS", "AWS_LAMBDA_FUNCTION_NAME"):
        env.pop(key, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with service(["api", "--port", str(port)], env, folder / "api.log") as proc:
        wait_until(lambda: _healthy(base), what=f"the API to answer\n{proc.log()}")
        yield RunningApi(base, port, url, folder, proc)


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
