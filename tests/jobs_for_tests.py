"""Job types that only tests register (BOOKLOGR_TASKS_JOB_MODULES=tests.jobs_for_tests)."""

from __future__ import annotations

import time

from booklogr_tasks.core.models import OwnerPayload
from booklogr_tasks.jobs import JobContext, JobSpec, Outcome, register
from pydantic import Field


class SleepPayload(OwnerPayload):
    seconds: float = Field(ge=0, le=600)


def sleep(ctx: JobContext, payload: SleepPayload) -> Outcome:
    """Sleeps in small steps, giving the task up as soon as the lease is lost."""
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        ctx.check_lost()
        time.sleep(0.02)
    return Outcome(result={"slept": payload.seconds})


def noop(ctx: JobContext, payload: OwnerPayload) -> Outcome:
    return Outcome(result=None)


SPECS = [
    JobSpec(
        task_type="test_sleep", payload_model=SleepPayload, run=sleep, summary="test only: sleep"
    ),
    JobSpec(
        task_type="test_noop", payload_model=OwnerPayload, run=noop, summary="test only: nothing"
    ),
]
for _spec in SPECS:
    register(_spec)
