"""Helpers for the API tests: the Chalice app, tokens like BookLogr's, a free port."""

from __future__ import annotations

import importlib.util
import json
import socket
import time
from pathlib import Path
from typing import Any

import jwt

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
