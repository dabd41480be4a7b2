"""The one Logger, Metrics and Tracer of the service (AWS Lambda Powertools).

Outside Lambda the Tracer is disabled by Powertools itself. Metrics are CloudWatch EMF blobs
printed to stdout, which only mean something where a metrics backend reads stdout: in Lambda they
are on by default; anywhere else (a developer's terminal, a self-hosted server) they are off
unless POWERTOOLS_METRICS_DISABLED=false asks for them (e.g. a CloudWatch agent reads the log).
POWERTOOLS_METRICS_DISABLED=true turns them off everywhere. The Logger always writes one JSON
line per event, Powertools' lines, made faster by core/logformat.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from booklogr_tasks.core.logformat import JsonLineFormatter

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "booklogr-tasks")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BookLogrTasks")

logger = Logger(service=SERVICE, logger_formatter=JsonLineFormatter())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@contextmanager
def log_context(**keys: Any) -> Iterator[None]:
    """`keys` on every line this thread logs meanwhile. Not Powertools' append_context_keys,
    which changes the keys of every thread's lines: the API's handler threads would log each
    other's routes."""
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(list(keys))


def metrics_enabled() -> bool:
    """Whether EMF metric blobs are written (read at each call: tests and servers set it late)."""
    setting = os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower()
    if setting in _TRUE:
        return False
    if setting in _FALSE:
        return True
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def count_metric(name: str, **dimensions: str) -> None:
    """One CloudWatch (EMF) count where metrics are enabled, nothing elsewhere. single_metric
    keeps concurrent requests' dimensions apart."""
    if not metrics_enabled():
        return
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


__all__ = [
    "MetricUnit",
    "count_metric",
    "log_context",
    "logger",
    "metrics",
    "metrics_enabled",
    "tracer",
]
