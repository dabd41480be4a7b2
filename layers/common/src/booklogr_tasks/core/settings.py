"""Typed settings from the environment, read once per process: every variable the service
reads is a field of `Settings` (its name in upper case), except `TASK_FUNCTION_<TYPE>` (one per
task type, read by `function_name`) and what the service passes through to the libraries and
runtimes that own them (`POWERTOOLS_*`, `AWS_*`): docs/settings.md lists them all.

Names follow BookLogr where BookLogr has one (DATABASE_URL, AUTH_SECRET_KEY, SINGLE_USER_MODE,
EXPORT_FOLDER); the rest are this service's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from booklogr_tasks.core.errors import SettingsError

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/booklogr"
# What an upload's form may hold besides the file (part headers, `type`, `allow_duplicates`).
UPLOAD_FORM_BYTES = 64 * 1024


@dataclass(frozen=True)
class RetryDelay:
    """How long a task given back waits before it may run again: `base * 2^(attempts - 1)`
    seconds, at most `cap`."""

    base: float = 2.0
    cap: float = 300.0

    def params(self) -> dict[str, float]:
        return {"backoff_base": self.base, "backoff_cap": self.cap}


# Set while load_settings builds settings from a mapping: the process's environment is not read.
_ONLY_GIVEN: ContextVar[bool] = ContextVar("settings_only_given", default=False)


class Settings(BaseSettings):
    # Read from the environment by field name in any case; variables that are no field are
    # ignored (the environment holds far more than this service's settings).
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    auth_secret_key: str | None = Field(None, repr=False)
    single_user_mode: bool = False
    export_folder: Path = Path("exports")
    export_bucket: str | None = None
    worker_nickname: str | None = None
    task_invoker: Literal["inprocess", "lambda"] = "inprocess"
    task_lease_seconds: float = Field(60.0, gt=0)
    task_max_attempts: int = Field(3, ge=1)
    # How often a listener looks for fresh tasks even without a notification.
    task_sweep_seconds: float = Field(5.0, gt=0)
    # Requests larger than this are refused with 413 before their body is parsed.
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # An import uploaded to POST /v1/files: its file's size limit (enforced while reading), and
    # how long the request waits for the import to finish before answering 202 instead of 200.
    max_upload_bytes: int = Field(32 * 1024 * 1024, gt=0)
    upload_wait_seconds: float = Field(5.0, ge=0)
    # Lifetime of a presigned S3 download link.
    download_url_seconds: int = Field(300, gt=0)
    # Lambda function names: "<prefix><task type>" unless TASK_FUNCTION_<TYPE> overrides one.
    task_function_prefix: str = "booklogr-tasks-dev-"
    # Retention: finished tasks older than this are deleted; exports beyond the newest
    # `export_keep_per_format` per user and format are deleted once older than
    # `export_max_age_days`.
    task_retention_days: float = Field(30.0, gt=0)
    export_keep_per_format: int = Field(3, ge=0)
    export_max_age_days: float = Field(7.0, gt=0)
    # How often a listener runs retention (it is cheap, and one listener at a time does it).
    retention_interval_seconds: float = Field(600.0, gt=0)
    # How often a listener's scheduler turns due export schedules into tasks: a scheduled
    # export starts within this long of its time.
    schedule_tick_seconds: float = Field(5.0, gt=0)
    # Backoff of a task given back after a lost connection, a statement timeout or a lost
    # worker: it runs again no earlier than base * 2^(attempts - 1) seconds later, at most cap.
    task_retry_base_seconds: float = Field(2.0, ge=0)
    task_retry_max_seconds: float = Field(300.0, ge=0)
    # How long SIGTERM waits for running jobs before releasing them back to `fresh`.
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # --- the HTTP API (`booklogr-tasks api`) ---
    # Origins a browser may call the API from: comma-separated, `*` for any (BookLogr's default).
    cors_origins: str = "*"
    # Unfinished (fresh or started) tasks one user may have; past it POST /v1/tasks is 429.
    max_pending_tasks_per_user: int = Field(20, ge=1)
    # Handler threads that run the app. The handlers share one interpreter lock, and every
    # thread that wakes from a database round trip waits for it: a few threads serve more
    # requests than many (bench/README.md, benchmark 7), and six leave room for slow requests.
    api_threads: int = Field(6, ge=1, le=64)
    # Server processes, each with its own threads and connection pool: set it to the number of
    # cores where the clients and the database run elsewhere.
    api_workers: int = Field(1, ge=1, le=32)
    # Requests one server process works on at once; the rest wait in the accept backlog.
    api_max_connections: int = Field(1000, ge=1)
    api_backlog: int = Field(1024, ge=128)
    # Requests one client address may have in progress at once; past it the answer is 429 and
    # the connection is closed. Behind a reverse proxy every request comes from the proxy's
    # address: its own per-client limit applies (local/nginx), and this one must be larger.
    api_max_requests_per_client: int = Field(64, ge=1)
    # A request head must arrive within this time (and an idle keep-alive connection is closed
    # after it); a body that pauses this long is cut with 408.
    api_request_timeout_seconds: float = Field(15.0, gt=0, le=60)
    # A body must arrive at this average rate or faster once it has taken
    # api_body_grace_seconds; a slower one is cut with 408.
    api_min_body_rate_bytes: int = Field(1024, ge=1)
    api_body_grace_seconds: float = Field(10.0, gt=0)
    # The request line plus headers may not be larger than this (414 or 431 past it).
    api_max_header_bytes: int = Field(16 * 1024, ge=1024, le=256 * 1024)
    # Files uploaded to POST /v1/files that one user's imports may hold in the store at once
    # (unfinished and recently failed imports keep theirs): past it an upload is refused
    # before its body is read.
    upload_quota_bytes: int = Field(256 * 1024 * 1024, gt=0)
    # How long a failed import keeps its upload for a retry when the failure was not the file's
    # own (a file that cannot be imported as it is goes at once); then retention deletes it, so
    # failed uploads do not fill a user's quota.
    failed_upload_retention_hours: float = Field(24.0, gt=0)
    # --- the listener ---
    # Memory a listener's imports may reserve together (each reserves a few times its file's
    # size): imports past it wait their turn, so many large files at once cannot exhaust the
    # listener's memory. One import always runs, however large its file.
    import_memory_budget_bytes: int = Field(512 * 1024 * 1024, gt=0)
    # --- where the code comes from ---
    # Modules (comma-separated) imported at start-up to register more task types.
    booklogr_tasks_job_modules: str = ""
    # The Chalice project the API serves, where the repository's functions/ is not beside the
    # installed package (the container image sets it).
    booklogr_tasks_functions_dir: Path | None = None
    # --- `booklogr-tasks dev` (and `make run`) ---
    # The API's port when --port is not given.
    port: int = Field(8000, ge=1, le=65535)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment; no .env file (compose and systemd read those)."""
        if _ONLY_GIVEN.get():
            return (init_settings,)
        return (init_settings, env_settings)

    @field_validator(
        "auth_secret_key",
        "export_bucket",
        "worker_nickname",
        "booklogr_tasks_functions_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    @property
    def job_modules(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.booklogr_tasks_job_modules.split(",") if m.strip())

    @property
    def max_upload_body_bytes(self) -> int:
        """A whole upload request: the file's limit and room for the form's other fields."""
        return self.max_upload_bytes + UPLOAD_FORM_BYTES

    @property
    def heartbeat_seconds(self) -> float:
        """Heartbeats come four times per lease, so one late beat never loses a task."""
        return self.task_lease_seconds / 4

    @property
    def retry_delay(self) -> RetryDelay:
        return RetryDelay(self.task_retry_base_seconds, self.task_retry_max_seconds)

    def function_name(self, task_type: str) -> str:
        override = os.environ.get(f"TASK_FUNCTION_{task_type.upper()}")
        return override or f"{self.task_function_prefix}{task_type}"


def variable_names() -> list[str]:
    """The environment variables the model reads, as the docs name them."""
    return [name.upper() for name in Settings.model_fields]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ`, or from the process's environment (and only from it)."""
    try:
        if environ is None:
            return Settings()
        fields = {name.upper(): name for name in Settings.model_fields}
        values = {fields[k.upper()]: v for k, v in environ.items() if k.upper() in fields}
        token = _ONLY_GIVEN.set(True)
        try:
            return Settings.model_validate(values)
        finally:
            _ONLY_GIVEN.reset(token)
    except ValidationError as exc:
        problems = "; ".join(f"{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None


def load_only(*fields: str) -> Settings:
    """Settings with only these fields read from the environment (the rest at their defaults):
    for code that runs at import, where an unrelated bad variable must not fail the import (the
    command that uses it reports it)."""
    keys = {field.upper() for field in fields}
    return load_settings({k: v for k, v in os.environ.items() if k.upper() in keys})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests that change the environment call get_settings.cache_clear()."""
    return load_settings()
