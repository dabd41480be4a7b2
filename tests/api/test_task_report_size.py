"""What a task keeps and answers is at most 64 KB: an import of 200,000 duplicate rows reports
counts per reason and a few example rows, not every row."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from booklogr_tasks.core.models import UPLOADS
from booklogr_tasks.core.reports import MAX_REPORT_BYTES, bounded_error, bounded_result
from booklogr_tasks.core.settings import get_settings
from booklogr_tasks.worker.runner import Runner

from tests.api.support import bearer
from tests.helpers import insert_task

HEADER = "Title,Authors,ISBN/UID,Read Status,Star Rating\r\n"


def test_a_200000_duplicate_import_answers_in_at_most_64_kb(
    client: Any, conn: Any, export_folder: Path
) -> None:
    rows = [HEADER, "Dune,Frank Herbert,9780441172719,read,4\r\n" * 200_001]
    rows.append("Bad,Someone,,read,five\r\n" * 50)  # unreadable rows, each with its reason
    key = f"{UPLOADS}/5/{uuid.uuid4().hex}"
    (export_folder / key).parent.mkdir(parents=True)
    (export_folder / key).write_text("".join(rows))
    task_id = insert_task(conn, "storygraph_import", {"owner_id": 5, "file": key}, 5)
    assert Runner(get_settings(), "w").run_by_id(task_id) == "success"

    response = client.get(f"/v1/tasks/{task_id}", headers=bearer(5))

    assert response.status_code == 200
    assert len(response.body) <= MAX_REPORT_BYTES
    result = json.loads(response.body)["result"]
    assert result["imported"] == 1 and result["rows"] == 200_051
    assert result["skipped_duplicates"] == 200_000
    assert result["duplicate_reasons"] == {"the same ISBN as row …": 200_000}
    assert result["duplicate_rows"][:2] == [
        {"row": 3, "reason": "the same ISBN as row 2"},
        {"row": 4, "reason": "the same ISBN as row 2"},
    ]
    assert len(result["duplicate_rows"]) == 20
    assert result["invalid_rows"] == 50
    assert result["invalid_reasons"] == {"Star Rating … is not a number": 50}
    assert len(result["skipped_invalid"]) == 20


def test_any_result_and_error_are_kept_within_64_kb() -> None:
    huge = {
        "rows": 7,
        "every_row": list(range(100_000)),
        "by_row": {str(i): i for i in range(9000)},
    }
    error = bounded_error("x" * 100_000)
    kept = bounded_result(huge, error)
    assert kept is not None
    assert len(json.dumps(kept).encode()) + len(error.encode()) <= MAX_REPORT_BYTES
    assert kept["rows"] == 7 and kept["truncated"] is True
    small = {"rows": 1, "notes": ["fine"]}
    assert bounded_result(small, "an error") is small
