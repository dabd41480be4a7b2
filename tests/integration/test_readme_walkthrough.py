"""The README's curl walk-through, pasted in order into bash against a `make run`-style instance.

`make run` starts `booklogr-tasks dev` in the clone's folder with no AUTH_SECRET_KEY: the
walk-through's `.venv/bin/booklogr-tasks token` must find the secret `dev` made there, and its
user must be the one `dev` prints tokens for. Here `dev` runs in a folder laid out like a fresh
clone (`.venv/bin/booklogr-tasks`, `examples/`) on a fresh database, on a free port. A `.curlrc`
makes every curl also write its answer's status to stderr, so each answer is checked against the
status the README says it gives, without changing what the commands print.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import service
from tests.integration.http_calls import descendants, free_port, kill_all, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCK = re.compile(r"<!-- walkthrough: (?P<name>[^>]+?) -->\n```sh\n(?P<code>.*?)```", re.DOTALL)
README_API = "http://127.0.0.1:8000"
STATUS_LINE = re.compile(r"^HTTP (?P<status>\d{3}) (?P<method>[A-Z]+) (?P<url>\S+)$")

# Every request the walk-through makes, and the statuses the README shows for it.
EXPECTED: list[tuple[str, re.Pattern[str], set[int]]] = [
    ("GET", re.compile(r"/healthz"), {200}),
    # BookLogr's answer when the import is done quickly; 202 when it goes on in the background.
    ("POST", re.compile(r"/v1/files"), {200, 202}),
    ("POST", re.compile(r"/v1/tasks"), {202}),
    ("GET", re.compile(r"/v1/tasks/\d+"), {200}),
    ("GET", re.compile(r"/v1/exports/csv/\d+"), {200}),
    ("GET", re.compile(r"/v1/tasks\?limit=5"), {200}),
    ("GET", re.compile(r"/v1/exports"), {200}),
    ("POST", re.compile(r"/v1/tasks/\d+/retry"), {409}),
]


def walkthrough() -> list[tuple[str, str]]:
    blocks = [(m["name"], m["code"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]
    assert blocks, "README.md has no <!-- walkthrough: ... --> blocks"
    return blocks


def test_the_walkthrough_comes_after_run_it_and_starts_from_a_token() -> None:
    text = README.read_text(encoding="utf-8")
    first = text.index("<!-- walkthrough:")
    assert text.index("\n## Run it") < first
    setup = walkthrough()[0][1]
    assert f"API={README_API}" in setup and ".venv/bin/booklogr-tasks token" in setup
    everything = "\n".join(code for _, code in walkthrough())
    assert "AUTH_SECRET_KEY" not in everything, "the walk-through must use make run's secret"
    assert "-F file=@" in everything, "the walk-through must import a file from disk"


def fresh_clone(root: Path) -> Path:
    """A folder laid out like a clone after `make run` installed: .venv/bin and examples/."""
    clone = root / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    script = clone / ".venv" / "bin" / "booklogr-tasks"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m booklogr_tasks.cli "$@"\n')
    script.chmod(0o755)
    shutil.copytree(REPO / "examples", clone / "examples")
    return clone


def match(method: str, url: str) -> tuple[str, re.Pattern[str], set[int]] | None:
    path = re.sub(r"^https?://[^/]+", "", url)
    for rule in EXPECTED:
        if rule[0] == method and rule[1].fullmatch(path):
            return rule
    return None


def test_the_readme_walkthrough_works_when_pasted_after_make_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed; the walk-through is curl commands")
    clone = fresh_clone(tmp_path)
    curl_home = tmp_path / "curl-home"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text(
        'write-out = "%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n"\n'
    )
    port = free_port()
    # What `make run` sees on a fresh machine: no secret, no export folder of its own choosing.
    unset = {"AUTH_SECRET_KEY", "SINGLE_USER_MODE", "EXPORT_FOLDER", "EXPORT_BUCKET"}
    dev_env = {k: v for k, v in env.items() if k not in unset} | {"PORT": str(port)}
    script = "\n".join(
        f"echo '::block {name}' >&2\n{code}" for name, code in walkthrough()
    ).replace(README_API, f"http://127.0.0.1:{port}")
    shell_env = {k: v for k, v in os.environ.items() if k not in unset | {"DATABASE_URL"}}
    shell_env |= {"CURL_HOME": str(curl_home), "XDG_CONFIG_HOME": str(curl_home)}

    spawned: list[psutil.Process] = []
    try:
        with service(["dev"], dev_env, tmp_path / "dev.log", cwd=clone) as dev:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, dev)
            spawned += descendants(dev.pid)
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=clone,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\ndev:\n{dev.log()[-3000:]}"
            assert done.returncode == 0, report

            block, seen, wrong = "", set(), []
            for line in done.stderr.splitlines():
                if line.startswith("::block "):
                    block = line.removeprefix("::block ")
                elif found := STATUS_LINE.match(line):
                    rule = match(found["method"], found["url"])
                    assert rule, f"block {block!r}: unexpected request {line!r}\n{report}"
                    seen.add(rule[1].pattern)
                    if int(found["status"]) not in rule[2]:
                        wrong.append(f"block {block!r}: {line} (README shows {sorted(rule[2])})")
            assert not wrong, "\n".join(wrong) + "\n" + report
            assert seen == {rule[1].pattern for rule in EXPECTED}, report

            # What the README's sample answers say a fresh database gives.
            assert "Imported 5/5 books." in done.stdout, report
            assert re.search(r'"books": ?5\b', done.stdout), report
            rows = list(csv.DictReader(io.StringIO((clone / "my-library.csv").read_text())))
            assert [row["title"] for row in rows][:1] == ["Dune"] and len(rows) == 5
            # Everything `make run` keeps is in the data folder, exports included.
            assert list((clone / ".booklogr-tasks" / "exports").rglob("*.csv"))
    finally:
        kill_all(spawned)
