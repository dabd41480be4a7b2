"""The README is a newcomer's page (short, in the order they need it) and every link in it and
in docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
# Pages other parts of the work write; the README links them before they exist.
WRITTEN_ELSEWHERE = {"docs/queue.md", "docs/formats.md", "docs/backups.md"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_readme_is_short_and_in_a_newcomers_order() -> None:
    text = README.read_text("utf-8")
    assert len(text.splitlines()) <= 350
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sections[:5] == [
        "Run it",
        "Try it with curl",
        "Beside BookLogr",
        "Essential settings",
        "Command line",
    ]
    assert sections[-1] == "More"
    run_it = text.split("## Run it", 1)[1].split("\n## ", 1)[0]
    assert "make run" in run_it and "make test" in run_it and "make test-fast" in run_it


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_leads_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if str(linked.relative_to(REPO)) in WRITTEN_ELSEWHERE:
            continue
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}"
