"""Metrics blobs (CloudWatch EMF) only where a metrics backend reads them."""

from __future__ import annotations

import pytest
from booklogr_tasks.core.observability import count_metric, metrics_enabled


@pytest.mark.parametrize(
    ("lambda_name", "disabled", "enabled"),
    [
        (None, None, False),  # a developer's terminal, a self-hosted server
        ("booklogr-tasks-api", None, True),  # Lambda: CloudWatch reads stdout
        ("booklogr-tasks-api", "true", False),
        (None, "false", True),  # asked for explicitly (an agent reads the log)
    ],
)
def test_metrics_are_on_in_lambda_and_off_elsewhere_unless_asked(
    lambda_name: str | None,
    disabled: str | None,
    enabled: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in (
        ("AWS_LAMBDA_FUNCTION_NAME", lambda_name),
        ("POWERTOOLS_METRICS_DISABLED", disabled),
    ):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert metrics_enabled() is enabled
    count_metric("TasksCreated", task_type="csv_export")
    printed = capsys.readouterr().out
    assert ('"_aws"' in printed) is enabled
