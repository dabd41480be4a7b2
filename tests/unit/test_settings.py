from __future__ import annotations

import re

import pytest
from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.settings import load_settings
from booklogr_tasks.worker.listener import Backoff
from booklogr_tasks.worker.runner import worker_identity

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_defaults() -> None:
    s = load_settings({})
    assert (s.task_invoker, s.task_lease_seconds, s.task_max_attempts) == ("inprocess", 60, 3)
    assert s.single_user_mode is False and s.auth_secret_key is None
    assert s.heartbeat_seconds == 15


def test_values_from_environment() -> None:
    s = load_settings(
        {
            "SINGLE_USER_MODE": "true",
            "TASK_LEASE_SECONDS": "2.5",
            "EXPORT_BUCKET": "",
            "WORKER_NICKNAME": "box",
        }
    )
    assert s.single_user_mode is True and s.task_lease_seconds == 2.5
    assert s.export_bucket is None and s.worker_nickname == "box"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TASK_LEASE_SECONDS": "soon"}, "TASK_LEASE_SECONDS"),
        ({"TASK_INVOKER": "celery"}, "TASK_INVOKER"),
        ({"TASK_MAX_ATTEMPTS": "0"}, "TASK_MAX_ATTEMPTS"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_worker_identity_format() -> None:
    assert re.fullmatch(f"box:{UUID}", worker_identity("box"))
    assert re.fullmatch(UUID, worker_identity(None))
    assert worker_identity("a") != worker_identity("a")


def test_backoff_is_capped_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    delays = [backoff.next_delay() for _ in range(30)]
    assert all(0 <= d <= 2.0 for d in delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.1
