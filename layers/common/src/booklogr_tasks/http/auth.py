"""Who is calling: BookLogr's own access tokens (HS256 JWT, user id in claim `id`).

Tokens are refused as BookLogr's API (flask-jwt-extended) refuses them: expired (401 with
`"msg": "Token has expired"`, the body BookLogr's web app answers by refreshing its token),
without `exp`, refresh tokens (`type` other than `access`), and tokens whose `jti` BookLogr's
logout stored in its `revoked_tokens` table. With SINGLE_USER_MODE=true there are no tokens and
every request is user 1, as in BookLogr.
"""

from __future__ import annotations

import functools
import threading
import time

import jwt
import psycopg

from booklogr_tasks.core.errors import Misconfigured, SettingsError, TokenExpired, Unauthorized
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import files
from booklogr_tasks.http.routes import connection

SINGLE_USER_ID = 1
# Only HS256: listing one algorithm is what makes `alg=none` and algorithm-confusion tokens fail.
ALGORITHMS = ["HS256"]
_MAX_USER_ID = 2**31 - 1  # tasks.created_by is an integer column
# A database without BookLogr's revoked_tokens table is asked again after this long, so a
# BookLogr installed later is noticed without a restart; once the table is there, it stays.
REVOKED_TABLE_RECHECK_SECONDS = 60.0
# Tokens remembered as verified (_verified_claims): a few hundred bytes each.
TOKEN_CACHE_SIZE = 4096
EXPIRED = "the token has expired; sign in again"

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
    user_id, jti = verify_token(authorization, settings)
    if jti is not None:
        ensure_not_revoked(settings, jti)
    return user_id


def verify_token(authorization: str | None, settings: Settings) -> tuple[int, str | None]:
    """What `authenticate` checks without the database: the token's signature and claims.
    The user id and the token's `jti` (None without one), which `ensure_not_revoked` must
    then look up. Only CPU work, so the server can run it on its event loop."""
    if settings.single_user_mode:
        return SINGLE_USER_ID, None
    if not settings.auth_secret_key:
        raise Misconfigured(NOT_CONFIGURED)
    token = _bearer_token(authorization)
    user_id, jti, expires = _verified_claims(token, settings.auth_secret_key)
    # The one check that time can turn: a token that was valid when it was cached expires.
    if expires <= time.time():
        raise TokenExpired(EXPIRED)
    return user_id, jti


@functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _verified_claims(token: str, secret: str) -> tuple[int, str | None, int]:
    """The user id, `jti` and expiry of a token that passes every check; remembered by its
    exact text (signature included) and the secret: a client sends the same token on every
    request until it expires, and checking the signature again was a tenth of the server's
    work per request. A token that fails is never remembered (lru_cache keeps no exception),
    and the revocation look-up is never skipped."""
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpired(EXPIRED) from None
    except jwt.MissingRequiredClaimError:
        raise Unauthorized(
            "the token has no expiry (`exp`); use an access token issued by BookLogr"
        ) from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized("the token must be signed with HS256") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("the token's signature is not valid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is not valid: {exc}") from None
    # BookLogr's access tokens say `"type": "access"`; tokens minted by hand may leave it out.
    if claims.get("type", "access") != "access":
        raise Unauthorized("only an access token is accepted here, not a refresh token")
    user_id = claims.get("id")
    # bool is an int in Python; a token saying `"id": true` is not a user id.
    if type(user_id) is not int or not 1 <= user_id <= _MAX_USER_ID:
        raise Unauthorized("the token's `id` claim must be a positive integer user id")
    jti = claims.get("jti")
    if jti is not None and not isinstance(jti, str):
        raise Unauthorized("the token's `jti` claim must be text")
    # PyJWT checked that `exp` is a whole number of seconds.
    return user_id, jti, int(claims["exp"])


def ensure_not_revoked(settings: Settings, jti: str) -> None:
    """Unauthorized when BookLogr's logout revoked the token (a database round trip)."""
    if _revoked(settings, jti):
        raise Unauthorized("the token has been revoked (signed out); sign in again")


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise Unauthorized("missing Authorization header; send `Authorization: Bearer <token>`")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`")
    return token.strip()


# database URL -> (revoked_tokens exists, monotonic time it was last looked up)
_revoked_table: dict[str, tuple[bool, float]] = {}
_revoked_table_lock = threading.Lock()


def _revoked(settings: Settings, jti: str) -> bool:
    """One indexed look-up in BookLogr's revoked_tokens; none while that table is missing."""
    url = settings.database_url
    with connection(settings) as conn:
        with _revoked_table_lock:
            known = _revoked_table.get(url)
        now = time.monotonic()
        if known is None or (not known[0] and now - known[1] > REVOKED_TABLE_RECHECK_SECONDS):
            known = (files.table_exists(conn, "revoked_tokens"), now)
            with _revoked_table_lock:
                _revoked_table[url] = known
        if not known[0]:
            return False
        try:
            return files.token_revoked(conn, jti)
        except psycopg.errors.UndefinedTable:
            # Dropped since it was seen: forget it, and treat the token as BookLogr would
            # without the table.
            with _revoked_table_lock:
                _revoked_table.pop(url, None)
            return False
