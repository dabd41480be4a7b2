"""The one Logger, Metrics and Tracer of the service (AWS Lambda Powertools).

Outside Lambda the Tracer is disabled by Powertools itself and Metrics print EMF lines to stdout
when flushed; the Logger always writes one JSON line per event.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "booklogr-tasks")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BookLogrTasks")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
