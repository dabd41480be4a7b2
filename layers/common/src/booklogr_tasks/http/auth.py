"""Who is calling: BookLogr's own access tokens (HS256 JWT, user id in claim `id`).

With SINGLE_USER_MODE=true there are no tokens and every request is user 1, as in BookLogr.
"""

from __future__ import annotations

import jwt

from booklogr_tasks.core.errors import Misconfigured, SettingsError, Unauthorized
from booklogr_tasks.core.settings import Settings

SINGLE_USER_ID = 1
# Only HS256: listing one algorithm is what makes `alg=none` and algorithm-confusion tokens fail.
ALGORITHMS = ["HS256"]
_MAX_USER_ID = 2**31 - 1  # tasks.created_by is an integer column

NOT_CONFIGURED = (
    "the API needs AUTH_SECRET_KEY (the JWT secret BookLogr signs its tokens with) or "
    "SINGLE_USER_MODE=true; neither is set, so it could not tell who is calling"
)


def ensure_configured(settings: Settings) -> None:
    """Refuse to serve at all rather than serve everyone as nobody."""
    if not settings.single_user_mode and not settings.auth_secret_key:
        raise SettingsError(NOT_CONFIGURED)


def authenticate(authorization: str | None, settings: Settings) -> int:
    """The caller's user id from an `Authorization` header value, or Unauthorized."""
    if settings.single_user_mode:
        return SINGLE_USER_ID
    if not settings.auth_secret_key:
        raise Misconfigured(NOT_CONFIGURED)
    token = _bearer_token(authorization)
    try:
        claims = jwt.decode(token, settings.auth_secret_key, algorithms=ALGORITHMS)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; sign in again") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized("the token must be signed with HS256") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("the token's signature is not valid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is not valid: {exc}") from None
    user_id = claims.get("id")
    # bool is an int in Python; a token saying `"id": true` is not a user id.
    if type(user_id) is not int or not 1 <= user_id <= _MAX_USER_ID:
        raise Unauthorized("the token's `id` claim must be a positive integer user id")
    return user_id


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise Unauthorized("missing Authorization header; send `Authorization: Bearer <token>`")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`")
    return token.strip()
