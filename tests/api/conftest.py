"""The Chalice app under chalice.test.Client, stage `local`, on this test's own database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.api.support import FUNCTIONS, load_app


@pytest.fixture(scope="session")
def app_module() -> Any:
    return load_app()


@pytest.fixture
def client(env: dict[str, str], app_module: Any) -> Iterator[Any]:
    with Client(app_module.app, stage_name="local", project_dir=str(FUNCTIONS)) as c:
        yield c.http
