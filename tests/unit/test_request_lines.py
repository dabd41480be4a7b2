"""http/serving.py's log_request: a failed request always has its line at INFO; a successful
one only at DEBUG (its own event, such as "task created", is the INFO line)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from booklogr_tasks.core.observability import logger
from booklogr_tasks.http.serving import log_request


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    written = io.StringIO()
    handler = logger.registered_handler
    stream = handler.setStream(written)  # type: ignore[attr-defined]
    level = logger.log_level
    try:
        yield written
    finally:
        handler.setStream(stream)  # type: ignore[attr-defined]
        logger.setLevel(level)


def _logged(written: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in written.getvalue().splitlines()]


@pytest.mark.parametrize("status", [400, 401, 404, 413, 429, 499, 500, 503])
def test_a_failed_request_has_its_line_at_info(lines: io.StringIO, status: int) -> None:
    logger.setLevel(logging.INFO)
    log_request(status, time.perf_counter() - 0.25, "GET /v1/tasks/{id}")
    (line,) = _logged(lines)
    assert line["level"] == "INFO"
    assert line["message"] == "request"
    assert line["route"] == "GET /v1/tasks/{id}"
    assert line["status"] == status
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 250


@pytest.mark.parametrize("status", [200, 202, 204, 302, 304])
def test_a_successful_request_has_no_line_at_info(lines: io.StringIO, status: int) -> None:
    logger.setLevel(logging.INFO)
    log_request(status, time.perf_counter(), "GET /v1/tasks/{id}")
    assert _logged(lines) == []


def test_at_debug_every_request_has_its_line(lines: io.StringIO) -> None:
    logger.setLevel(logging.DEBUG)
    log_request(200, time.perf_counter(), "GET /v1/files")
    log_request(404, time.perf_counter())  # the app's line: the route is a context key
    first, second = _logged(lines)
    assert (first["level"], first["route"], first["status"]) == ("DEBUG", "GET /v1/files", 200)
    assert (second["level"], second["status"]) == ("INFO", 404)
    assert "route" not in second


def test_above_info_no_request_has_a_line(lines: io.StringIO) -> None:
    logger.setLevel(logging.WARNING)
    log_request(404, time.perf_counter(), "GET /nowhere")
    log_request(200, time.perf_counter(), "GET /healthz")
    assert _logged(lines) == []
