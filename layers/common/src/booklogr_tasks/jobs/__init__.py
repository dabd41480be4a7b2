"""The job registry: task type → JobSpec. The API's list of types, the listener's default
`--types` and the OpenAPI document all come from here."""

from __future__ import annotations

import importlib
from typing import Any

from booklogr_tasks.core.errors import JobError
from booklogr_tasks.core.settings import load_only
from booklogr_tasks.jobs.base import JobContext, JobSpec, Outcome

REGISTRY: dict[str, JobSpec[Any]] = {}


def register(spec: JobSpec[Any]) -> JobSpec[Any]:
    if spec.task_type in REGISTRY and REGISTRY[spec.task_type] is not spec:
        raise ValueError(f"task type {spec.task_type!r} is registered twice")
    REGISTRY[spec.task_type] = spec
    return spec


def known_types() -> list[str]:
    return sorted(REGISTRY)


def get_spec(task_type: str) -> JobSpec[Any] | None:
    return REGISTRY.get(task_type)


def _load_builtin_jobs() -> None:
    import booklogr_tasks.jobs.exports.goodreads  # noqa: F401
    from booklogr_tasks.jobs.exports import backup as backup_export  # noqa: F401
    from booklogr_tasks.jobs.exports import csv, html, json  # noqa: F401
    from booklogr_tasks.jobs.imports import (  # noqa: F401
        backup,
        booklogr_csv,
        calibre,
        goodreads,
        storygraph,
    )


def _load_extra_jobs() -> None:
    """Job modules named in BOOKLOGR_TASKS_JOB_MODULES (comma-separated) register more types:
    how an operator adds a job, and how tests and benchmarks add their no-op jobs."""
    for name in load_only("booklogr_tasks_job_modules").job_modules:
        importlib.import_module(name)


_load_builtin_jobs()
_load_extra_jobs()

__all__ = [
    "REGISTRY",
    "JobContext",
    "JobError",
    "JobSpec",
    "Outcome",
    "get_spec",
    "known_types",
    "register",
]
