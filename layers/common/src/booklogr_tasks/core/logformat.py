"""The Logger's JSON formatter: Powertools' own, with a shorter path for the common line.

Every request the API answers and every task a listener runs writes at least one line at the
default level (INFO), so a line's cost is paid per request. Powertools' formatter spends most
of it on work a plain line does not need: it tries to decode every message as JSON (a failed
`json.loads` raises and builds a JSONDecodeError), looks each record attribute up in a tuple,
and builds a new JSONEncoder per line. For a line with a plain text message, no %-arguments and
no exception, `format` builds the same dict, in the same key order, with none of that; any
other line goes through Powertools' own `format` unchanged. tests/unit/test_logformat.py
compares the two on every kind of line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aws_lambda_powertools.logging.formatter import (
    RESERVED_LOG_ATTRS,
    LambdaPowertoolsFormatter,
)

_RESERVED = frozenset(RESERVED_LOG_ATTRS)
# What json.loads would accept as a whole message: a text starting with one of these, or one of
# the words (possibly with spaces around).
_JSON_STARTS = frozenset('{["-0123456789 \t\r\n')
_JSON_WORDS = frozenset({"true", "false", "null", "NaN", "Infinity"})


def _may_be_json(message: str) -> bool:
    if not message:
        return True  # Powertools' own path, to be safe; nobody logs an empty message
    head = message[0]
    if head in _JSON_STARTS:
        return True
    return head in "tfnNI" and message.rstrip() in _JSON_WORDS


class JsonLineFormatter(LambdaPowertoolsFormatter):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if "json_serializer" not in options:
            # Powertools' own serializer (json.dumps with these options), with the encoder built
            # once instead of per line.
            self.json_serializer = json.JSONEncoder(
                default=self.json_default,
                separators=(",", ":"),
                indent=self.json_indent,
                ensure_ascii=False,
            ).encode

    def format(self, record: logging.LogRecord) -> str:
        message = record.msg
        if record.exc_info or record.args or not isinstance(message, str) or _may_be_json(message):
            return super().format(record)
        fields = record.__dict__.copy()
        fields["asctime"] = self.formatTime(record)
        line: dict[str, Any] = {}
        for keys in (self.log_format, self.thread_safe_get_current_keys()):
            for key, value in keys.items():
                if value and key in _RESERVED:
                    if not isinstance(value, str):
                        return super().format(record)  # which says what is wrong
                    line[key] = value % fields
                else:
                    line[key] = value
        for key, value in fields.items():
            if key not in _RESERVED:
                line[key] = value
        line["message"] = message
        if self.serialize_stacktrace:
            line.pop("stack_trace", None)  # Powertools sets it from exc_info: None here
        line["xray_trace_id"] = self._get_latest_trace_id()
        return self.serialize(log={k: v for k, v in line.items() if v is not None})


__all__ = ["JsonLineFormatter"]
