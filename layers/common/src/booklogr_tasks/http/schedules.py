"""What the schedule routes do: PUT, GET and DELETE a user's export schedules (db/schedules.py).

Every function takes the settings and the caller's user id; a user only ever reads or changes
their own schedules (the format in the path names one of the caller's).
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from booklogr_tasks.core.errors import BadRequest, InvalidField, NotFound, PayloadTooLarge
from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db import schedules
from booklogr_tasks.db.schedules import SCHEDULABLE, Every, Schedule
from booklogr_tasks.http.routes import connection


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: Every
    keep: StrictInt = Field(ge=1, le=30)

    @field_validator("keep", mode="before")
    @classmethod
    def _whole_float(cls, value: object) -> object:
        # JSON does not tell 14 from 14.0 (both are the integer of the OpenAPI document).
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class ScheduleView(BaseModel):
    format: str
    every: Every
    keep: int
    next_run_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleView:
        return cls(
            format=schedule.format,
            every=schedule.every,
            keep=schedule.keep,
            next_run_at=schedule.next_run_at,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleView]


def put_schedule(settings: Settings, owner_id: int, fmt: str, body: bytes) -> ScheduleView:
    """Create or change the caller's schedule of `fmt` exports."""
    _known_format(fmt)
    request = _parse(body, settings.max_body_bytes)
    with connection(settings) as conn:
        schedule = schedules.put(conn, owner_id, fmt, request.every, request.keep)
    logger.info(
        "schedule set",
        extra={"owner_id": owner_id, "format": fmt, "every": request.every, "keep": request.keep},
    )
    return ScheduleView.of(schedule)


def list_schedules(settings: Settings, owner_id: int) -> ScheduleList:
    with connection(settings) as conn:
        return ScheduleList(items=[ScheduleView.of(s) for s in schedules.list_own(conn, owner_id)])


def delete_schedule(settings: Settings, owner_id: int, fmt: str) -> None:
    _known_format(fmt)
    with connection(settings) as conn:
        if not schedules.delete(conn, owner_id, fmt):
            raise NotFound(f"you have no {fmt} export schedule")
    logger.info("schedule deleted", extra={"owner_id": owner_id, "format": fmt})


def _known_format(fmt: str) -> None:
    if fmt not in SCHEDULABLE:
        shown = fmt if len(fmt) <= 40 else fmt[:40] + "…"
        raise NotFound(
            f"there is no export format {shown!r} to schedule; formats: {', '.join(SCHEDULABLE)}"
        )


def _parse(body: bytes, limit: int) -> ScheduleBody:
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest('the body must be a JSON object: {"every": "day", "keep": 7}')
    try:
        return ScheduleBody.model_validate(parsed)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(map(str, err["loc"])) or "body"
            problems.append(f"{where}: {err['msg']}")
        raise InvalidField("; ".join(problems)) from None


__all__ = [
    "ScheduleList",
    "ScheduleView",
    "delete_schedule",
    "list_schedules",
    "put_schedule",
]
