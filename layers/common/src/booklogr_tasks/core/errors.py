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


class TokenExpired(Unauthorized):
    """BookLogr's web app refreshes its token only on a 401 whose `msg` is exactly this
    (flask-jwt-extended's own body); any other 401 ends the user's action with an error."""

    def body(self) -> dict[str, str]:
        return {**super().body(), "msg": "Token has expired"}


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UploadTooLarge(PayloadTooLarge):
    """An uploaded file grew past its limit while it was being stored (nothing is kept)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes")
        self.limit = limit


class UnknownTaskType(ApiError):
    status, code = 422, "unknown_type"


class InvalidField(ApiError):
    status, code = 422, "invalid"


class ImportFailed(ApiError):
    """An uploaded file's import ended in failure; the message is the import's own error."""

    status, code = 422, "import_failed"


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


class TooManyRequests(ApiError):
    """One client address has too many requests in progress at once."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})


class UploadQuotaExceeded(PayloadTooLarge):
    code = "upload_quota_exceeded"


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
    """Not failed, or (`ours` False) failed but run by BookLogr itself, not by this service."""

    def __init__(self, status: str, ours: bool = True) -> None:
        super().__init__(f"only a failed task can be retried; this one is {status}")
        self.status = status
        self.ours = ours


class PendingCapReached(RuntimeError):
    """The owner already has `cap` unfinished tasks (MAX_PENDING_TASKS_PER_USER): nothing
    changed."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"already {cap} unfinished tasks")
        self.cap = cap


class TaskLost(RuntimeError):
    """This worker no longer owns the task (lease expired, or the process is shutting down)."""


class UploadMissing(LookupError):
    """No stored upload under this key (never stored, or already deleted)."""


class JobError(Exception):
    """A failure with a message meant for the user (bad data, a broken file, ...)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result


class FileUnusable(JobError):
    """The file itself cannot be imported as it is (not CSV, not the format, past a limit, no
    readable row): a retry cannot fix it, so its upload is deleted with the failure."""


class OwnerNotAUser(JobError):
    """The task's owner is not one of BookLogr's users (where BookLogr's `users` table exists)."""

    def __init__(self, owner_id: int) -> None:
        super().__init__(
            f"There is no BookLogr account with the id {owner_id}, so there is no library to "
            "export or import into."
        )


class RowInvalid(ValueError):
    """A row that cannot be imported; the message is the reason shown to the user."""
