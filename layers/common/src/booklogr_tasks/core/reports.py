"""What a task keeps and answers is bounded: `result` + `error` at most MAX_REPORT_BYTES (the
contract's 64 KB), whatever the job put in them. Jobs summarise long lists themselves (an
import keeps counts per reason and a few example rows); this is the guard that holds for every
job, applied where results and errors are stored."""

from __future__ import annotations

import json
from typing import Any

MAX_REPORT_BYTES = 64 * 1024
# An error is a sentence or two; past this it is cut (with a mark saying so).
MAX_ERROR_CHARS = 4 * 1024
# A list or mapping in a result that does not fit keeps this many items.
KEPT_ITEMS = 10
CUT = " … (cut short)"


def report_size(result: dict[str, Any] | None, error: str | None) -> int:
    """Bytes of the result (as JSON) and the error (as UTF-8), as stored and answered."""
    size = 0 if error is None else len(error.encode())
    if result is not None:
        size += len(json.dumps(result, ensure_ascii=False, default=str).encode())
    return size


def bounded_error(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS] + CUT


def bounded_result(
    result: dict[str, Any] | None, error: str | None = None
) -> dict[str, Any] | None:
    """The result as it is when it fits beside `error`; else its long lists and mappings cut
    to their first KEPT_ITEMS (with `truncated: true`); else its short scalar fields alone."""
    if result is None or report_size(result, error) <= MAX_REPORT_BYTES:
        return result
    cut: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, list) and len(value) > KEPT_ITEMS:
            value = value[:KEPT_ITEMS]
        elif isinstance(value, dict) and len(value) > KEPT_ITEMS:
            value = dict(list(value.items())[:KEPT_ITEMS])
        cut[key] = value
    cut["truncated"] = True
    if report_size(cut, error) <= MAX_REPORT_BYTES:
        return cut
    scalars = {
        key: value
        for key, value in result.items()
        if isinstance(value, int | float | bool) or (isinstance(value, str) and len(value) < 1024)
    }
    return {**scalars, "truncated": True}
