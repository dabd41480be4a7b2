"""The formula guard: what the export's SQL does, the importer undoes exactly."""

from __future__ import annotations

import re

from booklogr_tasks.jobs.books import FORMULA_PATTERN, unneutralise
from hypothesis import given
from hypothesis import strategies as st


def neutralise(value: str) -> str:
    """The export's SQL CASE expression, in Python (checked against SQL in integration tests)."""
    return "'" + value if re.match(FORMULA_PATTERN, value) else value


@given(st.text(alphabet=st.sampled_from("'=+-@\t\rab ,\"\n"), max_size=8) | st.text())
def test_round_trip_is_exact(value: str) -> None:
    assert unneutralise(neutralise(value)) == value


@given(st.text())
def test_neutralised_never_starts_a_formula(value: str) -> None:
    assert neutralise(value)[:1] not in {"=", "+", "-", "@", "\t", "\r"}


def test_examples() -> None:
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("'=1") == "''=1"
    assert neutralise("'plain") == "'plain"
    assert unneutralise("'plain") == "'plain"
    assert unneutralise("''=1") == "'=1"
