"""`booklogr-tasks token`: an access token like the ones BookLogr issues, for trying the API.

BookLogr's access tokens are HS256 JWTs signed with its AUTH_SECRET_KEY, the user id in the
integer claim `id`, `type` "access", a `jti` and an expiry. The API accepts exactly those.
"""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from pathlib import Path

import jwt

from booklogr_tasks.core.settings import load_settings

# BookLogr's own access tokens live five days.
DEFAULT_LIFETIME_SECONDS = 5 * 24 * 3600


def mint_token(secret: str, user_id: int, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS) -> str:
    now = int(time.time())
    claims = {
        "id": user_id,
        "type": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class NoSecret(Exception):
    """Neither a secret file nor AUTH_SECRET_KEY to sign with."""


def read_secret(secret_file: Path | None, default_file: Path) -> str:
    """The signing secret: the file given, else AUTH_SECRET_KEY, else `make run`'s local file."""
    from_env = load_settings().auth_secret_key
    if secret_file is None and from_env:
        return from_env
    path = secret_file or default_file
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise NoSecret(
            f"cannot read the secret in {path} ({exc.strerror}); set AUTH_SECRET_KEY or pass "
            "--secret-file (the path `make run` prints)"
        ) from None
    if not secret:
        raise NoSecret(f"{path} is empty")
    return secret


def token_command(secret_file: Path | None, user_id: int) -> str:
    """A shell command that prints a fresh token, with absolute paths so it works anywhere."""
    script = Path(sys.executable).with_name("booklogr-tasks")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "booklogr_tasks.cli"]
    args = [*program, "token"]
    if user_id != 1:
        args += ["--user", str(user_id)]
    if secret_file is not None:
        args += ["--secret-file", str(secret_file.resolve())]
    return shlex.join(args)
