"""docs/settings.md's table of variables is the settings model, field for field and default for
default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from booklogr_tasks.core.settings import load_settings, variable_names

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "settings.md"
PACKAGE = REPO / "layers" / "common" / "src" / "booklogr_tasks"


def table(heading: str) -> dict[str, list[str]]:
    """The rows of the table under `heading`: first cell's variable → the other cells."""
    section = DOC.read_text("utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if match:
            rows[match.group(1)] = cells[1:]
    return rows


def test_every_variable_the_model_reads_is_documented_and_nothing_else() -> None:
    assert sorted(table("Variables the service reads")) == sorted(variable_names())


def test_documented_defaults_are_the_model_defaults() -> None:
    defaults = load_settings({})
    for variable, (default, *_) in table("Variables the service reads").items():
        actual = getattr(defaults, variable.lower())
        written = re.fullmatch(r"`([^`]*)`", default)
        if written is None:
            # Words ("unset", "the repository's functions/") describe a default left to code.
            assert actual in (None, ""), variable
            continue
        value = written.group(1)
        if isinstance(actual, bool):
            assert value == str(actual).lower(), variable
        elif isinstance(actual, int | float):
            assert float(value) == actual, variable
        else:
            assert value == str(actual), variable


def test_passed_through_variables_are_not_the_models() -> None:
    passed = table("Passed through")
    assert passed, "the page lists what it passes through"
    assert not set(passed) & set(variable_names())
    assert all(name.startswith(("POWERTOOLS_", "AWS_")) for name in passed)


def test_the_process_environment_is_read_and_a_given_mapping_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("booklogr_tasks_job_modules", "a, b")
    assert load_settings().port == 8123
    assert load_settings().job_modules == ("a", "b")
    assert load_settings({}).port == 8000
    assert load_settings({"port": "8001"}).port == 8001


def test_code_reads_no_variable_the_docs_do_not_list() -> None:
    """Outside the model, code reads only what it passes through (and TASK_FUNCTION_<TYPE>)."""
    allowed = set(table("Passed through"))
    sources = [*PACKAGE.rglob("*.py"), REPO / "functions" / "app.py"]
    # Reads only: `os.environ[...] = ...` and `del os.environ[...]` hand values to children.
    read = re.compile(
        r"""(?:environ\.get\(|getenv\()\s*f?["']([A-Za-z0-9_]+)"""
        r"""|(?<!del os\.)environ\[\s*f?["']([A-Za-z0-9_]+)["']\](?!\s*=[^=])"""
    )
    for source in sources:
        for names in read.findall(source.read_text("utf-8")):
            name = "".join(names)
            if source.name != "settings.py":
                assert name in allowed, f"{source} reads {name}"
