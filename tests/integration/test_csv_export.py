"""csv_export run through the runner on a real database: the file, the row, the failure paths."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs.books import CSV_COLUMNS, unneutralise
from booklogr_tasks.worker.runner import Runner
from psycopg import sql

from tests.helpers import insert_task, seed_books, task_row


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _export_file(conn: Any, export_folder: Path, task_id: int) -> Path:
    row = conn.execute("SELECT * FROM csv_export WHERE task_id = %s", (task_id,)).fetchone()
    assert row is not None, "no csv_export row"
    return export_folder / row["filename"]


def test_export_contains_exactly_the_owners_books(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    books = seed_books(conn, owner_id=5)
    seed_books(conn, owner_id=6, count=3)  # someone else's
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)

    assert Runner(settings, "test-worker").run_by_id(task_id) == "success"

    path = _export_file(conn, export_folder, task_id)
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == CSV_COLUMNS
    rows = _read_csv(path)
    assert len(rows) == len(books)
    for row, book in zip(rows, books, strict=True):
        for column in ("title", "isbn", "reading_status", "author"):
            assert unneutralise(row[column]) == (book[column] or ""), column
        assert unneutralise(row["description"]) == (book["description"] or "")
        assert row["current_page"] == str(book["current_page"])
        assert row["total_pages"] == str(book["total_pages"])
        assert row["rating"] == (book["rating"] or "")
        notes = json.loads(row["notes"])
        assert [n["content"] for n in notes] == book["notes"]
    report = task_row(conn, task_id)
    assert report["status"] == "success" and report["error"] is None


def test_formula_cells_are_neutralised(settings: Settings, conn: Any, export_folder: Path) -> None:
    seed_books(conn, owner_id=5)
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    Runner(settings, "w").run_by_id(task_id)
    rows = _read_csv(_export_file(conn, export_folder, task_id))
    cells = [row[c] for row in rows for c in ("title", "isbn", "description", "author")]
    dangerous = [c for c in cells if c and c[0] in "=+-@\t\r"]
    assert dangerous == []
    titles = {row["title"] for row in rows}
    assert '\'=HYPERLINK("http://evil")' in titles
    assert "'\tTabbed" in titles and "'\rCarriage" in titles
    assert "''=already quoted" in titles  # so the importer can strip exactly one
    assert "'plain apostrophe" in titles  # not a formula: untouched


def test_empty_library_gives_a_header_only_file(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 9}, 9)
    assert Runner(settings, "w").run_by_id(task_id) == "success"
    text = _export_file(conn, export_folder, task_id).read_text(encoding="utf-8")
    assert text == ",".join(CSV_COLUMNS) + "\n"


def test_result_names_the_export_and_its_download(settings: Settings, conn: Any) -> None:
    seed_books(conn, owner_id=5, count=4)
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    Runner(settings, "w").run_by_id(task_id)
    export = conn.execute("SELECT * FROM csv_export WHERE task_id = %s", (task_id,)).fetchone()
    result = conn.execute(
        "SELECT result FROM task_results WHERE task_id = %s", (task_id,)
    ).fetchone()["result"]
    assert result == {
        "export_id": export["id"],
        "format": "csv",
        "books": 4,
        "download": f"/v1/exports/csv/{export['id']}",
    }
    assert export["owner_id"] == 5
    # Ids, then a random part: a later database counting its ids from 1 again never reuses it.
    assert re.fullmatch(
        rf"export_csv-{task_id}-{export['id']}-[0-9a-f]{{8}}\.csv", export["filename"]
    )


def _assert_failed_and_nothing_written(
    conn: Any, export_folder: Path, task_id: int, expected: str
) -> None:
    row = task_row(conn, task_id)
    assert row["status"] == "failure"
    assert expected in row["error"], row["error"]
    assert conn.execute("SELECT count(*) AS n FROM csv_export").fetchone()["n"] == 0
    assert [p for p in export_folder.rglob("*") if p.is_file()] == []


def test_bad_task_data_fails_with_a_specific_error(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    # An owner_id that is null or a string makes a row not this service's (DESIGN.md, Tables):
    # such rows are never claimed (test_data_without_an_owner_is_not_this_services_task).
    cases = {
        '{"owner_id": 5, "extra": 1}': "extra: Extra inputs are not permitted",
        '{"owner_id": 6}': "owner_id must be the user who created the task",
    }
    runner = Runner(settings, "w")
    for data, expected in cases.items():
        task_id = insert_task(conn, "csv_export", data, 5)
        assert runner.run_by_id(task_id) == "failure"
        _assert_failed_and_nothing_written(conn, export_folder, task_id, expected)


def test_data_without_an_owner_is_not_this_services_task(settings: Settings, conn: Any) -> None:
    """BookLogr's own tasks carry no owner_id (it stores a Python repr such as `{}`): never
    claimed, whatever else is in them."""
    runner = Runner(settings, "w")
    for data in (
        "not json",
        "[1, 2]",
        "{}",
        "{'owner_id': 5}",
        '{"owner_id": null}',
        '{"owner_id": "5"}',
    ):
        task_id = insert_task(conn, "csv_export", data, 5)
        assert runner.run_by_id(task_id) == "skipped"
        row = task_row(conn, task_id)
        assert (row["status"], row["worker"], row["attempts"]) == ("fresh", None, 0)


def test_unknown_type_fails_when_run_by_id_for_it(settings: Settings, conn: Any) -> None:
    task_id = insert_task(conn, "no_such_job", {"owner_id": 5}, 5)
    runner = Runner(settings, "w")
    assert runner.run_by_id(task_id, types=["no_such_job"]) == "failure"
    assert "no job is registered" in task_row(conn, task_id)["error"]


def test_failure_in_the_database_leaves_no_file_and_no_row(
    settings: Settings, conn: Any, export_folder: Path
) -> None:
    seed_books(conn, owner_id=5, count=3)
    # Make the success transaction fail after the file is written.
    conn.execute("ALTER TABLE exports ADD CONSTRAINT no_rows CHECK (owner_id < 0)")
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    assert Runner(settings, "w").run_by_id(task_id) == "failure"
    _assert_failed_and_nothing_written(conn, export_folder, task_id, "internal error")


def test_export_of_a_task_claimed_by_another_worker_is_skipped(
    settings: Settings, conn: Any
) -> None:
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    conn.execute("UPDATE tasks SET status = 'started', worker = 'x' WHERE id = %s", (task_id,))
    assert Runner(settings, "w").run_by_id(task_id) == "skipped"
    assert task_row(conn, task_id)["worker"] == "x"


def test_csv_is_readable_as_rfc4180(settings: Settings, conn: Any, export_folder: Path) -> None:
    seed_books(conn, owner_id=5)
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, 5)
    Runner(settings, "w").run_by_id(task_id)
    raw = _export_file(conn, export_folder, task_id).read_bytes()
    raw.decode("utf-8")  # strict UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), strict=True))
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)


@pytest.mark.parametrize("task_type", ["csv_export", "goodreads_export"])
def test_rows_end_with_crlf_and_line_breaks_in_cells_stay(
    settings: Settings, conn: Any, export_folder: Path, task_type: str
) -> None:
    """RFC 4180 and BookLogr's own export (Python's csv module) end every row with CRLF; a line
    break inside a cell is the cell's own and stays as stored."""
    seed_books(conn, owner_id=5)  # descriptions and notes with "\n", none with "\r"
    task_id = insert_task(conn, task_type, {"owner_id": 5}, 5)
    assert Runner(settings, "w").run_by_id(task_id) == "success"
    row = conn.execute(
        sql.SQL("SELECT filename FROM {} WHERE task_id = %s").format(sql.Identifier(task_type)),
        (task_id,),
    ).fetchone()
    raw = (export_folder / row["filename"]).read_bytes()
    records = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), strict=True))
    assert len(records) > 2 and raw.endswith(b"\r\n")
    assert raw.count(b"\r\n") == len(records)  # one per row, none inside a cell
    assert any("\n" in cell for record in records for cell in record)
