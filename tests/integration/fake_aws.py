"""Fake AWS for the deployed-mode tests: moto, plus what moto does not do.

moto answers every Lambda Invoke with 202, even for a missing function, so `fail_invokes`
makes the client receive the response AWS really sends (404 ResourceNotFoundException, 429
throttling) at the HTTP level: botocore parses and retries it exactly as it would the real one.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.storage.s3 import reset_client
from booklogr_tasks.worker import runner
from botocore.awsrequest import AWSResponse
from moto import mock_aws

AWS_ERRORS = {
    "missing": (404, "ResourceNotFoundException", "Function not found"),
    "throttled": (429, "TooManyRequestsException", "Rate Exceeded."),
}


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for S3, IAM and Lambda, with fake credentials and no ~/.aws files."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with mock_aws(config={"lambda": {"use_docker": False}}):
        reset_client()  # the process's S3 client must be made inside this mock
        try:
            yield
        finally:
            reset_client()


@pytest.fixture
def bucket(env: dict[str, str], fake_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """An exports bucket, with EXPORT_BUCKET pointing at it."""
    name = f"booklogr-exports-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    monkeypatch.setenv("EXPORT_BUCKET", name)
    get_settings.cache_clear()
    return name


@pytest.fixture
def lambda_runner(env: dict[str, str]) -> Iterator[None]:
    """A fresh process runner (what a Lambda container builds on its first invocation), made
    from this test's settings and stopped afterwards."""

    reset_default_runner()
    yield
    reset_default_runner()


def reset_default_runner() -> None:
    """Forget the process runner, so the next run_task builds one from the current settings."""
    with runner._default_lock:
        if runner._default_runner is not None:
            runner._default_runner.leases.stop()
        runner._default_runner = None


def deploy_functions(names: list[str]) -> None:
    """Create these Lambda functions in moto (it only echoes payloads; tests run jobs)."""
    role = boto3.client("iam").create_role(
        RoleName=f"fn-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zipped:
        zipped.writestr("app.py", "def handler(event, context):\n    return event\n")
    client = boto3.client("lambda")
    for name in names:
        client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
        )


@dataclass
class InvokeSpy:
    """Records the parameters of every Invoke call a client makes; can make AWS refuse them."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)  # function name → AWS_ERRORS key

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.lambda.Invoke", self._record)
        client.meta.events.register_first("before-send.lambda.Invoke", self._respond)

    def task_ids(self, function: str | None = None) -> list[int]:
        return [
            json.loads(call["Payload"])["task_id"]
            for call in self.calls
            if function is None or call["FunctionName"] == function
        ]

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))

    def _respond(self, request: Any, **_: Any) -> AWSResponse | None:
        function = request.url.split("/functions/")[1].split("/")[0]
        if function not in self.failing:
            return None  # moto answers
        status, code, message = AWS_ERRORS[self.failing[function]]
        body = json.dumps({"Type": "User", "message": message}).encode()
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
        return AWSResponse(request.url, status, headers, _RawBody(body))


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()
