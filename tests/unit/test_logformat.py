"""core/logformat.py writes exactly the line Powertools' own formatter writes, for every kind of
record: the short path must never change what a log reader sees."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from booklogr_tasks.core.logformat import JsonLineFormatter
from booklogr_tasks.core.observability import log_context, logger

_source = logging.getLogger("test_logformat")


def _record(msg: Any, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("broken")
        except ValueError:
            exc_info = sys.exc_info()
    return _source.makeRecord(
        "test_logformat", logging.INFO, __file__, 42, msg, args, exc_info, "a_function", extra
    )


class _Opaque:
    def __str__(self) -> str:
        return "opaque"


RECORDS: dict[str, Callable[[], logging.LogRecord]] = {
    "plain with extras": lambda: _record("request", route="GET /v1/tasks", status=200),
    "plain, no extras": lambda: _record("task created"),
    "word that is not JSON": lambda: _record("false alarm"),
    "non-ASCII": lambda: _record("import réussi", title="Kafka på stranden"),
    "value JSON cannot write": lambda: _record("odd", thing=_Opaque()),
    "None extra is dropped": lambda: _record("x", task_id=None),
    "%-arguments": lambda: _record("task %s of %d", "export", 3),
    "dict message": lambda: _record({"event": "x", "n": 1}),
    "JSON object text": lambda: _record('{"event": "x"}'),
    "JSON list text": lambda: _record("[1, 2]"),
    "number text": lambda: _record("123"),
    "negative number text": lambda: _record("-1"),
    "true": lambda: _record("true"),
    "null with spaces": lambda: _record(" null "),
    "NaN": lambda: _record("NaN"),
    "empty": lambda: _record(""),
    "exception": lambda: _record("failed", exc=True, task_id=3),
    "extras named like Powertools' own": lambda: _record(
        "x", exception="given", stack_trace="given", exception_name="given"
    ),
}


def _pair(**options: Any) -> tuple[LambdaPowertoolsFormatter, JsonLineFormatter]:
    theirs = LambdaPowertoolsFormatter(**options)
    ours = JsonLineFormatter(**options)
    for formatter in (theirs, ours):
        formatter.append_keys(service="booklogr-tasks", sampling_rate=None)
    return theirs, ours


@pytest.mark.parametrize("case", list(RECORDS))
def test_every_kind_of_line_is_written_as_powertools_writes_it(case: str) -> None:
    theirs, ours = _pair()
    record = RECORDS[case]()
    assert ours.format(record) == theirs.format(record)


def test_keys_appended_removed_and_per_thread_are_kept_in_powertools_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    theirs, ours = _pair(log_record_order=["message", "level"])
    for formatter in (theirs, ours):
        formatter.append_keys(request_id="r-1", cold_start=False)
        formatter.remove_keys(["sampling_rate"])
    ours.thread_safe_append_keys(route="POST /v1/tasks")  # one context, both formatters see it
    try:
        record = _record("request", status=202)
        line = ours.format(record)
        assert line == theirs.format(record)
        assert list(json.loads(line))[:2] == ["message", "level"]
        assert json.loads(line)["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    finally:
        ours.thread_safe_clear_keys()


def test_pretty_lines_under_powertools_dev_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    theirs, ours = _pair()
    record = _record("request", status=200)
    assert ours.format(record) == theirs.format(record)
    assert "\n" in ours.format(record)


def test_each_thread_logs_its_own_context_keys() -> None:
    """The API's handler threads each run one request: a line must carry its own route, never
    another thread's (Powertools' append_context_keys shares them between threads)."""
    inside = threading.Barrier(2)

    def request(route: str) -> None:
        with log_context(route=route):
            inside.wait(timeout=5)  # both threads are inside their context now
            logger.warning("request", extra={"mine": route})
            inside.wait(timeout=5)
        logger.warning("after", extra={"mine": route})

    threads = [threading.Thread(target=request, args=(r,)) for r in ("GET /a", "POST /b")]
    written = io.StringIO()
    stream = logger.registered_handler.setStream(written)  # type: ignore[attr-defined]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    inside_lines = [line for line in lines if line["message"] == "request"]
    assert len(inside_lines) == 2
    assert all(line["route"] == line["mine"] for line in inside_lines)
    assert all("route" not in line for line in lines if line["message"] == "after")
