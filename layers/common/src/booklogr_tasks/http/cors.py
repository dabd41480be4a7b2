"""CORS: which browser origins may call the API, and the headers that tell the browser so.

BookLogr's web app and API live on different origins, so every call from the browser is a CORS
request (a preflight first, since it sends `Authorization`). The same headers go on every answer,
errors included: a browser hides the body of an answer without them, and the web app could not
show the error's message. Both faces use this module: the production server for the answers it
gives itself (preflights, 401/404/405/413 before the app runs) and functions/app.py for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

ANY = "*"
# What BookLogr's web app sends; Accept for good measure.
ALLOW_HEADERS = "Authorization, Content-Type, Accept"
# Answer headers a script may read: where a new task is, when to poll, the download's name.
EXPOSE_HEADERS = "Location, Retry-After, Content-Disposition, WWW-Authenticate"
# A browser may reuse a preflight's answer this long (seconds).
MAX_AGE = "600"


def allowed_origin(origin: str | None, origins: Iterable[str]) -> str | None:
    """The Access-Control-Allow-Origin value for a request from `origin`, or None (not allowed)."""
    allowed = tuple(origins)
    if ANY in allowed:
        return ANY
    if origin and origin in allowed:
        return origin
    return None


def cors_headers(origin: str | None, origins: Iterable[str], methods: str) -> dict[str, str]:
    """The headers of an answer to a request from `origin`; empty when the origin is not allowed
    (the browser then refuses the answer, as it should)."""
    value = allowed_origin(origin, origins)
    if value is None:
        return {"Vary": "Origin"}
    headers = {
        "Access-Control-Allow-Origin": value,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
    }
    if value != ANY:
        # The answer depends on the Origin header: caches must keep one per origin.
        headers["Vary"] = "Origin"
    return headers


def preflight_headers(origin: str | None, origins: Iterable[str], methods: str) -> dict[str, str]:
    """The headers of the 204 answer to a preflight (`OPTIONS` + Access-Control-Request-Method)."""
    headers = cors_headers(origin, origins, methods)
    if "Access-Control-Allow-Origin" in headers:
        headers["Access-Control-Max-Age"] = MAX_AGE
    headers["Allow"] = methods
    return headers


def allowed_methods(methods: Iterable[str]) -> str:
    """The Allow / Access-Control-Allow-Methods value of a route that answers `methods`."""
    return ", ".join(sorted({*methods, "OPTIONS"}))


__all__ = [
    "ALLOW_HEADERS",
    "EXPOSE_HEADERS",
    "allowed_methods",
    "allowed_origin",
    "cors_headers",
    "preflight_headers",
]
