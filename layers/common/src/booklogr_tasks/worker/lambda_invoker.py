"""LambdaInvoker (TASK_INVOKER=lambda): the listener asks AWS Lambda to run each fresh task.

The function claims the task itself (runner.run_task), so the listener never marks anything
started: an invocation that AWS refuses leaves the task fresh, and the next sweep tries again.
A duplicated invocation is harmless because the second claim finds the task no longer fresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from booklogr_tasks.core.observability import logger
from booklogr_tasks.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# The listener's loop waits on each call, so a slow or throttling endpoint must not stall it:
# no client-side retries with backoff sleeps; the next sweep is the retry.
CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"},
)


def lambda_client() -> LambdaClient:
    return boto3.client("lambda", config=CLIENT_CONFIG)


def _error_code(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


class LambdaInvoker:
    """A RemoteInvoker: the function claims the task; this process never runs one."""

    def __init__(
        self,
        settings: Settings,
        client: LambdaClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client or lambda_client()
        self.clock = clock
        # (function, error code) pairs already logged, so a missing function is one warning
        # per outage rather than one per task per sweep.
        self._reported: set[tuple[str, str]] = set()
        # After an error, a function gets no further calls until the next sweep is due: a
        # throttled or missing function is not hammered once per waiting task.
        self._resting_until: dict[str, float] = {}
        self._cooldown = settings.task_sweep_seconds / 2

    def invoke(self, task_id: int, task_type: str) -> bool:
        """Ask Lambda to run the task asynchronously; False leaves it fresh for the next sweep."""
        function = self.settings.function_name(task_type)
        if self.clock() < self._resting_until.get(function, 0.0):
            return False
        try:
            self.client.invoke(
                FunctionName=function,
                InvocationType="Event",
                Payload=json.dumps({"task_id": task_id}).encode(),
            )
        except (ClientError, BotoCoreError) as exc:
            self._on_error(function, task_id, task_type, exc)
            return False
        self._on_success(function)
        logger.debug("task invoked", extra={"task_id": task_id, "function": function})
        return True

    def shutdown(self, grace_seconds: float) -> None:
        """Nothing runs here: invoked functions finish (or time out) on their own."""

    def _on_error(
        self, function: str, task_id: int, task_type: str, exc: ClientError | BotoCoreError
    ) -> None:
        self._resting_until[function] = self.clock() + self._cooldown
        code = _error_code(exc)
        if (function, code) in self._reported:
            return
        self._reported.add((function, code))
        logger.warning(
            "lambda invoke failed; the task stays fresh for the next sweep",
            extra={
                "function": function,
                "task_type": task_type,
                "task_id": task_id,
                "error_code": code,
                "error": str(exc),
            },
        )

    def _on_success(self, function: str) -> None:
        self._resting_until.pop(function, None)
        recovered = {pair for pair in self._reported if pair[0] == function}
        if recovered:
            self._reported -= recovered
            logger.info("lambda invoke works again", extra={"function": function})
