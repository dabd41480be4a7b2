"""Every error type of the service.

Typed API errors know their HTTP status and render as `{"error", "message"}`.

Package functions raise these; the HTTP layer only maps them to a response, so every refusal
has one precise status and a sentence the caller can act on.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="booklogr-tasks"'})


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnknownTaskType(ApiError):
    status, code = 422, "unknown_type"


class InvalidField(ApiError):
    status, code = 422, "invalid"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"


class UriTooLong(ApiError):
    status, code = 414, "uri_too_long"


class TooManyPendingTasks(ApiError):
    status, code = 429, "too_many_tasks"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"Retry-After": str(retry_after)})


class HeadersTooLarge(ApiError):
    status, code = 431, "headers_too_large"


class Misconfigured(ApiError):
    status, code = 500, "misconfigured"


class Unavailable(ApiError):
    status, code = 503, "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "5"})


class ConnectionLost(Unavailable):
    """The database connection broke while a request used it, before anything was committed:
    running the request again on a new connection is safe."""


# --- errors below the HTTP layer -------------------------------------------------------------


class SettingsError(RuntimeError):
    """The environment holds a value this service cannot use."""


class SchemaOutOfDate(RuntimeError):
    pass


class TaskNotFound(LookupError):
    """No such task, or not the caller's: the two are indistinguishable on purpose."""


class TaskNotRetryable(RuntimeError):
    def __init__(self, status: str) -> None:
        super().__init__(f"only a failed task can be retried; this one is {status}")
        self.status = status


class TaskLost(RuntimeError):
    """This worker no longer owns the task (lease expired, or the process is shutting down)."""


class JobError(Exception):
    """A failure with a message meant for the user (bad data, a broken file, ...)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result


class RowInvalid(ValueError):
    """A row that cannot be imported; the message is the reason shown to the user."""
