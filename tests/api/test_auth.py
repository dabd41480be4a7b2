"""Authentication: BookLogr's HS256 tokens (claim `id`), its refusals (expired with
`"msg": "Token has expired"`, refresh tokens, no `exp`, revoked `jti`), single-user mode,
refusing to start."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import jwt
import pytest
from booklogr_tasks import cli
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.http import auth

from tests.api.support import SECRET, bearer, booklogr_token, mint_token
from tests.helpers import task_row

# Every route that needs a caller, with a body where it takes one.
PROTECTED = [
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/1"),
    ("POST", "/v1/tasks/1/retry"),
    ("GET", "/v1/exports"),
    ("GET", "/v1/exports/csv/1"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/export_csv-1-1.csv"),
    ("POST", "/v1/files"),
]


def _unsigned(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, algorithm="none")


def _hs512() -> str:
    # Same secret, stronger algorithm: still refused, only HS256 is BookLogr's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT finds the test secret short for SHA-512
        return mint_token(5, algorithm="HS512")


BAD_TOKENS = {
    "malformed": "Bearer not.a.jwt",
    "garbage": "Bearer abc",
    "empty-bearer": "Bearer ",
    "wrong-scheme": f"Basic {mint_token(5)}",
    "no-scheme": mint_token(5),
    "expired": f"Bearer {mint_token(5, lifetime=-60)}",
    "wrong-signature": f"Bearer {mint_token(5, secret='another-secret-key-0123456789-abcdef')}",
    "alg-none": f"Bearer {_unsigned({'id': 5})}",
    "alg-hs512": f"Bearer {_hs512()}",
    "id-as-string": f"Bearer {mint_token('5')}",
    "id-as-bool": f"Bearer {mint_token(True)}",
    "id-zero": f"Bearer {mint_token(0)}",
    "id-too-large": f"Bearer {mint_token(2**31)}",
    "no-id": f"Bearer {jwt.encode({'sub': '5', 'exp': 2**40}, SECRET, 'HS256')}",
    "no-exp": f"Bearer {jwt.encode({'id': 5}, SECRET, 'HS256')}",
    "refresh": f"Bearer {jwt.encode({'id': 5, 'type': 'refresh', 'exp': 2**40}, SECRET, 'HS256')}",
    "jti-not-text": f"Bearer {jwt.encode({'id': 5, 'jti': 7, 'exp': 2**40}, SECRET, 'HS256')}",
}


def _call(client: Any, method: str, path: str, headers: dict[str, str]) -> Any:
    if (method, path) == ("POST", "/v1/files"):  # an upload: a form with the file to import
        form = b'--b\r\nContent-Disposition: form-data; name="type"\r\n\r\ncsv\r\n--b--\r\n'
        return client.request(
            method,
            path,
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
            body=form,
        )
    body = b'{"type": "csv_export"}' if method == "POST" else b""
    return client.request(
        method, path, headers={**headers, "Content-Type": "application/json"}, body=body
    )


def _assert_401(response: Any) -> str:
    assert response.status_code == 401, response.body
    body = json.loads(response.body)
    # flask-jwt-extended's body for an expired token, which BookLogr's web app refreshes on.
    expired = {"msg": "Token has expired"} if "msg" in body else {}
    assert body == {"error": "unauthorized", "message": body["message"], **expired}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return str(body["message"])


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_route_needs_a_token(client: Any, method: str, path: str) -> None:
    assert "missing" in _assert_401(_call(client, method, path, {}))


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_401(client: Any, kind: str) -> None:
    message = _assert_401(_call(client, "GET", "/v1/tasks", {"Authorization": BAD_TOKENS[kind]}))
    if kind == "expired":
        assert "expired" in message
    if kind == "no-exp":
        assert "`exp`" in message
    if kind == "refresh":
        assert "refresh token" in message
    if kind == "wrong-signature":
        assert "signature" in message
    if kind in ("alg-none", "alg-hs512"):
        assert "HS256" in message


def test_only_an_expired_token_says_token_has_expired(client: Any) -> None:
    for kind in sorted(BAD_TOKENS):
        response = _call(client, "GET", "/v1/tasks", {"Authorization": BAD_TOKENS[kind]})
        said = json.loads(response.body).get("msg")
        assert said == ("Token has expired" if kind == "expired" else None), kind


def test_booklogr_access_tokens_work_until_booklogr_revokes_them(
    client: Any, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A missing table is looked for again after this long; here, on every request.
    monkeypatch.setattr(auth, "REVOKED_TABLE_RECHECK_SECONDS", 0.0)
    headers = booklogr_token(5, "0b5e5a2c-7d1e-4d36-9b0e-3f9d8f1f2a11")
    # No revoked_tokens table (no BookLogr here): nothing can be revoked.
    assert _call(client, "GET", "/v1/tasks", headers).status_code == 200

    # BookLogr's table, as its model creates it, and BookLogr's logout of another token.
    conn.execute("CREATE TABLE revoked_tokens (id serial PRIMARY KEY, jti varchar(120))")
    conn.execute("INSERT INTO revoked_tokens (jti) VALUES ('someone-elses-jti')")
    assert _call(client, "GET", "/v1/tasks", headers).status_code == 200

    conn.execute("INSERT INTO revoked_tokens (jti) VALUES (%s)", (headers_jti(headers),))
    message = _assert_401(_call(client, "GET", "/v1/tasks", headers))
    assert "revoked" in message
    _assert_401(_call(client, "POST", "/v1/tasks", headers))


def headers_jti(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_a_bad_token_creates_nothing(client: Any, conn: Any) -> None:
    _assert_401(_call(client, "POST", "/v1/tasks", {"Authorization": BAD_TOKENS["alg-none"]}))
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_a_valid_token_names_the_caller(client: Any, conn: Any) -> None:
    response = _call(client, "POST", "/v1/tasks", bearer(42))
    assert response.status_code == 202
    assert task_row(conn, json.loads(response.body)["task_id"])["created_by"] == 42


def test_single_user_mode_needs_no_token_and_is_user_1(
    client: Any, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINGLE_USER_MODE", "true")
    monkeypatch.delenv("AUTH_SECRET_KEY")
    get_settings.cache_clear()

    response = _call(client, "POST", "/v1/tasks", {})

    assert response.status_code == 202
    assert task_row(conn, json.loads(response.body)["task_id"])["created_by"] == 1
    assert _call(client, "GET", "/v1/tasks", {}).status_code == 200


def test_without_secret_or_single_user_mode_requests_fail_cleanly(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTH_SECRET_KEY")
    get_settings.cache_clear()
    response = _call(client, "GET", "/v1/tasks", bearer(5))
    assert response.status_code == 500
    body = json.loads(response.body)
    assert body["error"] == "misconfigured" and "AUTH_SECRET_KEY" in body["message"]


def test_the_api_refuses_to_start_without_secret_or_single_user_mode(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AUTH_SECRET_KEY")
    get_settings.cache_clear()

    assert cli.main(["api", "--port", "0"]) == 2

    err = capsys.readouterr().err
    assert "AUTH_SECRET_KEY" in err and "SINGLE_USER_MODE" in err


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered (http/auth._verified_claims); expiry is checked anew on
    every request all the same."""
    settings = get_settings().model_copy(
        update={"auth_secret_key": SECRET, "single_user_mode": False}
    )
    header = f"Bearer {mint_token(5, lifetime=60)}"
    assert auth.verify_token(header, settings) == (5, None)
    assert auth.verify_token(header, settings) == (5, None)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(auth.TokenExpired):
        auth.verify_token(header, settings)
    # A refused token is not remembered: each request is refused the same way.
    for _ in range(2):
        with pytest.raises(auth.Unauthorized):
            auth.verify_token(BAD_TOKENS["wrong-signature"], settings)
