"""The benchmarks still run: `python -m bench --smoke` (tiny sizes, one rep) and its JSON shape.

No timings are asserted; this only keeps bench/ from rotting as the package changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]
ROW_KEYS = {
    "metric",
    "value",
    "unit",
    "baseline",
    "baseline_name",
    "ratio",
    "target",
    "met",
    "note",
}


@pytest.mark.slow
def test_bench_smoke_writes_every_benchmark(tmp_path: Path, pg_server_url: str) -> None:
    env = {**os.environ, "TEST_DATABASE_URL": pg_server_url}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["mode"] == "smoke"
    assert {"nproc", "cpu", "postgresql", "python"} <= set(report["machine"])
    names = [r["name"] for r in report["results"]]
    assert names == list(BENCHMARKS)
    for result in report["results"]:
        assert result["status"] in {"ok", "not available"}, result
        if result["status"] == "ok":
            assert result["rows"], result["name"]
        for row in result["rows"]:
            assert set(row) == ROW_KEYS
            assert row["value"] is None or isinstance(row["value"], int | float)
    assert "| benchmark | metric |" in (tmp_path / "latest.md").read_text()
    # One run adds one history line and no file of its own.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.jsonl",
        "latest.json",
        "latest.md",
    ]
    (line,) = (tmp_path / "history.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["mode"] == "smoke"
    assert entry["started_at"] == report["started_at"]
    assert entry["metrics"]


def test_bench_rejects_unknown_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown benchmark(s) nonsense" in done.stderr
