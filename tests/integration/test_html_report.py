"""html_export as a reading report: its summary, its groups, its escaping (read back with an HTML
parser), its memory, and the page as a real headless browser renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tracemalloc
from datetime import datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.worker.runner import Runner

from tests.helpers import insert_task, task_row

# Tags the report is made of; anything else in the page came from user text.
REPORT_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3", "p",
    "section", "dl", "div", "dt", "dd", "figure", "figcaption", "table", "tr", "th", "td", "span",
    "nav", "a", "article", "ul", "li", "small", "footer", "svg", "defs", "pattern", "rect",
    "thead", "tbody",
    "line", "g", "text",
}  # fmt: skip
HOSTILE = {
    "title": "<script>alert('title')</script>",
    "subtitle": "</h3><iframe src=//evil.invalid>",
    "author": '" onmouseover="alert(1)" x="<svg onload=alert(5)>',
    "description": "'><img src=http://canary.invalid/x onerror=alert(2)>&amp; already-escaped",
    "isbn": "<b>978</b>",
    "note": "</p><script>alert(3)</script><a href='javascript:alert(4)'>x</a>",
    "status": "<style>body{display:none}</style>",
}


class Page(HTMLParser):
    """The parsed page: every start tag with its attributes, and the text, as a browser sees it."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        """The text nodes, one space between them (as a reader sees separate elements)."""
        return " ".join(self.texts)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def _export(settings: Settings, conn: Any, owner: int) -> str:
    task_id = insert_task(conn, "html_export", {"owner_id": owner}, owner)
    assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)
    row = conn.execute("SELECT filename FROM html_export WHERE task_id = %s", (task_id,)).fetchone()
    assert row is not None, "no html_export row"
    return (settings.export_folder / row["filename"]).read_text(encoding="utf-8")


def _book(conn: Any, owner: int, **values: Any) -> int:
    columns = {"title": "A book", "owner_id": owner, **values}
    names = ", ".join(columns)
    marks = ", ".join(f"%({c})s" for c in columns)
    row = conn.execute(f"INSERT INTO books ({names}) VALUES ({marks}) RETURNING id", columns)
    return int(row.fetchone()["id"])


def _finished(conn: Any, book_id: int, end: str, status: str = "Read") -> None:
    conn.execute(
        """INSERT INTO reading_sessions (book_id, status, start_date, end_date)
           VALUES (%s, %s, %s::timestamp - interval '10 days', %s)""",
        (book_id, status, end, end),
    )


def _hostile_library(conn: Any, owner: int) -> None:
    h = HOSTILE
    for status in ("Read", "Currently reading", h["status"]):
        book = _book(
            conn,
            owner,
            title=h["title"],
            subtitle=h["subtitle"],
            author=h["author"],
            description=h["description"],
            isbn=h["isbn"],
            reading_status=status,
            total_pages=200,
            rating=Decimal("3.5"),
        )
        conn.execute("INSERT INTO notes (book_id, content) VALUES (%s, %s)", (book, h["note"]))


def _assert_only_report_markup(page: Page) -> None:
    assert {name for name, _ in page.tags} <= REPORT_TAGS
    for name, attrs in page.tags:
        for attr, value in attrs.items():
            assert not attr.startswith("on"), (name, attr)
            assert attr not in ("src", "srcset", "action", "formaction"), (name, attr)
            if attr == "href":
                assert value is not None and re.fullmatch(r"#[a-z-]+", value), value
    assert len(page.all("style")) == 1


# --- escaping -----------------------------------------------------------------------------------


def test_hostile_text_is_text_to_an_html_parser(settings: Settings, conn: Any) -> None:
    _hostile_library(conn, 5)
    raw = _export(settings, conn, 5)
    page = Page(raw)

    _assert_only_report_markup(page)
    # Each hostile string is there as text, exactly as written (the book, the charts' labels
    # and tables, the note, the odd status).
    for key, value in HOSTILE.items():
        assert value in page.text, key
    assert page.text.count(HOSTILE["author"]) >= 3 + 1  # three books and the authors' table
    svg_titles = [t for t in page.texts if t.startswith(HOSTILE["author"])]
    assert svg_titles, "the author is a label of the most-read authors chart"
    assert "<script" not in raw.lower() and "<iframe" not in raw and "<img" not in raw


# --- what the report says -----------------------------------------------------------------------


def _library(conn: Any, owner: int) -> dict[str, int]:
    ids = {
        "dune": _book(conn, owner, title="Dune", author="Frank Herbert", reading_status="Read",
                      total_pages=600, rating=Decimal("4.50"), created_on=datetime(2019, 5, 1)),
        "emma": _book(conn, owner, title="emma", author="Jane Austen", reading_status="Read",
                      total_pages=400, rating=Decimal("5.00"), created_on=datetime(2019, 6, 1)),
        "persuasion": _book(conn, owner, title="Persuasion", author="Jane Austen",
                            reading_status="Read", total_pages=250, rating=Decimal("3.25"),
                            created_on=datetime(2020, 1, 1)),
        "zebra": _book(conn, owner, title="Zebra", author="Jane Austen", reading_status="Read",
                       total_pages=100, created_on=datetime(2018, 2, 3)),
        "apple": _book(conn, owner, title="apple", reading_status="Read", total_pages=50,
                       created_on=datetime(2018, 7, 3)),
        "now": _book(conn, owner, title="Reading now", reading_status="Currently reading",
                     current_page=120, total_pages=300),
        "later": _book(conn, owner, title="Later", reading_status="To be read",
                       created_on=datetime(2021, 1, 1)),
        "aaa": _book(conn, owner, title="Aaa", reading_status="To be read"),
        "dnf": _book(conn, owner, title="Given up", reading_status="Did not finish",
                     current_page=40, total_pages=500, rating=Decimal("1")),
    }  # fmt: skip
    _finished(conn, ids["dune"], "2021-03-04 10:00")
    _finished(conn, ids["emma"], "2022-08-09 10:00")
    _finished(conn, ids["emma"], "2023-01-02 10:00")  # read twice
    _finished(conn, ids["persuasion"], "2022-01-15 10:00")
    _finished(conn, ids["dnf"], "2022-05-05 10:00", status="Did not finish")  # not a read
    conn.execute("INSERT INTO notes (book_id, content, quote_page) VALUES (%s, 'Spice.', 12)",
                 (ids["dune"],))  # fmt: skip
    return ids


def _titles_in(raw: str, anchor: str) -> list[str]:
    section = raw.split(f'<section class="group" id="{anchor}">', 1)[1]
    section = re.split(r'<section class="group"|<footer>', section, maxsplit=1)[0]
    return re.findall(r"<h3>([^<]*)", section)


def test_books_are_grouped_by_status_and_sorted(settings: Settings, conn: Any) -> None:
    _library(conn, 5)
    _book(conn, 6, title="Someone else's", reading_status="Read")
    raw = _export(settings, conn, 5)

    groups = re.findall(r'<section class="group" id="([a-z-]+)">', raw)
    assert groups == ["currently-reading", "read", "to-be-read", "did-not-finish"]
    # Read: most recently finished first, then the ones without a finish date by title.
    assert _titles_in(raw, "read") == ["emma", "Persuasion", "Dune", "apple", "Zebra"]
    assert _titles_in(raw, "to-be-read") == ["Aaa", "Later"]
    assert "Someone else" not in raw
    assert raw.count("<article>") == 9


def test_books_show_ratings_dates_progress_and_notes(settings: Settings, conn: Any) -> None:
    _library(conn, 5)
    page = Page(_export(settings, conn, 5))
    text = re.sub(r"\s+", " ", page.text)

    assert "★★★★½ 4.5 / 5" in text and "★★★★★ 5 / 5" in text and "3.25 / 5" in text
    assert "4.50" not in text and "5.00" not in text
    assert "Finished 2023-01-02" in text and "Added 2018-02-03" in text
    assert "Page 120 of 300" in text and "Page 40 of 500" in text
    assert "Dune Frank Herbert ★★★★½ 4.5 / 5 Finished 2021-03-04 600 pages Spice. page 12" in text


def test_summary_counts_from_the_database(settings: Settings, conn: Any) -> None:
    _library(conn, 5)
    raw = _export(settings, conn, 5)
    text = re.sub(r"\s+", " ", Page(raw).text)

    assert "Books 9 Read 5 Pages read 1,400 Average rating 3.4 / 5" in text
    assert "Status Books Currently reading 1 Read 5 To be read 2 Did not finish 1" in text, (
        "counts per status"
    )
    # Years: finished sessions where there are (Emma twice), else the date added.
    assert (
        "Year Books Pages Dated by date added 2018 2 150 2 2021 1 600 0 2022 2 650 0 2023 1 400 0"
        in text
    )
    assert "by the date added, for read books without a finish date" in text
    assert "Rating Books 5 / 5 1 4.5 / 5 1 3.5 / 5 1 1 / 5 1" in text
    assert "Author Books Pages Jane Austen 3 750 Frank Herbert 1 600" in text
    # Every chart is inline SVG whose bars say their number.
    assert raw.count("<svg") == 5
    assert re.search(r'class="value"[^>]*>5</text>', raw)  # 5 read books
    assert re.search(r'class="value"[^>]*>3 books</text>', raw)  # Jane Austen


def test_the_year_chart_says_which_dates_it_uses(settings: Settings, conn: Any) -> None:
    finished = _book(conn, 5, title="A", reading_status="Read", total_pages=10)
    _finished(conn, finished, "2024-02-02")
    _book(conn, 6, title="B", reading_status="Read", total_pages=10)

    only_finished = Page(_export(settings, conn, 5)).text
    only_added = Page(_export(settings, conn, 6)).text
    nothing_read = Page(_export(settings, conn, 7)).text

    assert "By the date each book was finished (BookLogr's reading history)." in only_finished
    assert "By the date each book was added to BookLogr: no finish dates" in only_added
    assert "No books read yet." in nothing_read and "No books yet." in nothing_read


def test_the_page_is_self_contained(settings: Settings, conn: Any) -> None:
    _library(conn, 5)
    raw = _export(settings, conn, 5)
    page = Page(raw)

    _assert_only_report_markup(page)
    assert raw.startswith("<!DOCTYPE html>") and raw.rstrip().endswith("</html>")
    assert "http" not in raw and "//" not in raw.replace("://", "")
    assert "@import" not in raw and re.findall(r"url\((?!#)", raw) == []
    assert [a["href"] for a in page.all("a")] == [
        "#currently-reading", "#read", "#to-be-read", "#did-not-finish"
    ]  # fmt: skip
    assert {a.get("id") for _, a in page.tags if a.get("id")} >= {"read", "to-be-read"}
    assert 'name="viewport"' in raw and "@media print" in raw


# --- memory -------------------------------------------------------------------------------------


def test_rendering_holds_no_more_than_a_batch(settings: Settings, conn: Any) -> None:
    books = 20_000
    conn.execute(
        """INSERT INTO books (title, author, description, reading_status, total_pages, rating,
                              owner_id, created_on)
           SELECT 'Book ' || g, 'Author ' || g %% 500, repeat('A description. ', 20),
                  (ARRAY['Read', 'Currently reading', 'To be read', 'Did not finish'])[g %% 4 + 1],
                  100 + g %% 400, (g %% 10 + 1) / 2.0, 5,
                  timestamp '2015-01-01' + g * interval '3 h'
             FROM generate_series(1, %s) g""",
        (books,),
    )
    conn.execute(
        "INSERT INTO notes (book_id, content) SELECT id, repeat('A note. ', 10) FROM books"
    )
    task_id = insert_task(conn, "html_export", {"owner_id": 5}, 5)
    tracemalloc.start()
    try:
        assert Runner(settings, "w").run_by_id(task_id) == "success", task_row(conn, task_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    row = conn.execute("SELECT filename FROM html_export WHERE task_id = %s", (task_id,)).fetchone()
    raw = (settings.export_folder / row["filename"]).read_text(encoding="utf-8")
    assert raw.count("<article>") == books
    # The page is about 15 MB of text, and the books it came from would take more as Python
    # objects: rendering held a batch of rows (1,000) and the page's buffer, never the whole.
    assert len(raw) > 10_000_000
    assert peak < 12_000_000, f"peak {peak:,} bytes of Python objects for {len(raw):,} bytes"


# --- in a real browser --------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
# Chromium's own background services (updates, clock, sign-in) that it may call on start.
BROWSER_SERVICE_HOSTS = re.compile(
    r"https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com)/"
)


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no headless browser: none of " + ", ".join(BROWSERS) + " is on PATH "
        "(install Debian's chromium with `make chromium`, i.e. tests/browser/install-chromium.sh)"
    )


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done


def test_a_headless_browser_renders_the_report(
    settings: Settings, conn: Any, tmp_path: Path
) -> None:
    browser = _browser()
    _library(conn, 5)
    _hostile_library(conn, 5)
    page_file = tmp_path / "report.html"
    page_file.write_text(_export(settings, conn, 5), encoding="utf-8")
    url = page_file.as_uri()
    net_log = tmp_path / "net-log.json"

    dom = _run_browser(
        browser, tmp_path / "profile", f"--log-net-log={net_log}", "--dump-dom", url
    ).stdout.decode()
    shot = tmp_path / "report.png"
    _run_browser(
        browser, tmp_path / "profile", "--window-size=1100,2600", f"--screenshot={shot}", url
    )
    pdf = tmp_path / "report.pdf"
    _run_browser(
        browser, tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url
    )
    keep = os.environ.get("REPORT_SCREENSHOT")  # where to keep the screenshot to look at it
    if keep:
        shutil.copy(shot, keep)

    rendered = Page(dom)
    _assert_only_report_markup(rendered)  # the browser built no element from user text
    assert HOSTILE["title"] in rendered.text and HOSTILE["note"] in rendered.text
    assert len(rendered.all("svg")) == 5 and len(rendered.all("article")) == 12
    # The page asked for nothing: no URL but the browser's own services was requested.
    events = json.loads(net_log.read_text())["events"]
    requested = {e["params"]["url"] for e in events if "url" in e.get("params", {})}
    assert {u for u in requested if not BROWSER_SERVICE_HOSTS.match(u)} == set()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
