"""PUT, GET and DELETE /v1/schedules: each user's own export schedules."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.api.support import bearer


def _put(client: Any, user: int, fmt: str, body: Any) -> Any:
    headers = {**bearer(user), "Content-Type": "application/json"}
    text = body if isinstance(body, str) else json.dumps(body)
    return client.put(f"/v1/schedules/{fmt}", headers=headers, body=text.encode())


def _items(client: Any, user: int) -> list[dict[str, Any]]:
    response = client.get("/v1/schedules", headers=bearer(user))
    assert response.status_code == 200
    items: list[dict[str, Any]] = json.loads(response.body)["items"]
    return items


def test_a_user_sets_changes_lists_and_deletes_schedules(client: Any, conn: Any) -> None:
    assert _items(client, 5) == []
    created = _put(client, 5, "backup", {"every": "week", "keep": 4})
    assert created.status_code == 200, created.body
    schedule = json.loads(created.body)
    assert {k: schedule[k] for k in ("format", "every", "keep")} == {
        "format": "backup",
        "every": "week",
        "keep": 4,
    }
    first_run = datetime.fromisoformat(schedule["next_run_at"])
    assert _put(client, 5, "csv", {"every": "day", "keep": 1}).status_code == 200

    changed = json.loads(_put(client, 5, "backup", {"every": "week", "keep": 30}).body)
    assert changed["keep"] == 30
    assert datetime.fromisoformat(changed["next_run_at"]) == first_run  # same period: unmoved
    assert [(s["format"], s["every"], s["keep"]) for s in _items(client, 5)] == [
        ("backup", "week", 30),
        ("csv", "day", 1),
    ]
    rows = conn.execute("SELECT owner_id, format FROM export_schedules ORDER BY format")
    assert rows.fetchall() == [
        {"owner_id": 5, "format": "backup"},
        {"owner_id": 5, "format": "csv"},
    ]

    assert client.delete("/v1/schedules/csv", headers=bearer(5)).status_code == 204
    assert [s["format"] for s in _items(client, 5)] == ["backup"]
    gone = client.delete("/v1/schedules/csv", headers=bearer(5))
    assert gone.status_code == 404
    assert json.loads(gone.body)["message"] == "you have no csv export schedule"


def test_another_user_never_sees_or_changes_them(client: Any) -> None:
    assert _put(client, 5, "json", {"every": "month", "keep": 3}).status_code == 200
    assert _items(client, 6) == []
    assert client.delete("/v1/schedules/json", headers=bearer(6)).status_code == 404
    assert _put(client, 6, "json", {"every": "day", "keep": 1}).status_code == 200
    assert [(s["every"], s["keep"]) for s in _items(client, 5)] == [("month", 3)]
    assert client.get("/v1/schedules").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"every": "hour", "keep": 3}, "every:"),
        ({"keep": 3}, "every:"),
        ({"every": "day", "keep": 0}, "keep:"),
        ({"every": "day", "keep": 31}, "keep:"),
        ({"every": "day", "keep": "3"}, "keep:"),
        ({"every": "day"}, "keep:"),
        ({"every": "day", "keep": 3, "at": "noon"}, "at:"),
    ],
)
def test_bad_values_are_422_naming_the_field(client: Any, body: Any, field: str) -> None:
    response = _put(client, 5, "csv", body)
    assert response.status_code == 422
    answer = json.loads(response.body)
    assert answer["error"] == "invalid" and answer["message"].startswith(field)
    assert _items(client, 5) == []


def test_unknown_formats_and_broken_bodies(client: Any) -> None:
    unknown = _put(client, 5, "pdf", {"every": "day", "keep": 3})
    assert unknown.status_code == 404
    assert "formats: csv, json, html, goodreads, backup" in json.loads(unknown.body)["message"]
    assert client.delete("/v1/schedules/pdf", headers=bearer(5)).status_code == 404
    assert _put(client, 5, "csv", "{not json").status_code == 400
    assert _put(client, 5, "csv", "[1]").status_code == 400


def test_the_document_describes_the_schedule_routes(client: Any) -> None:
    doc = json.loads(client.get("/openapi.json").body)
    put = doc["paths"]["/v1/schedules/{format}"]["put"]
    assert put["parameters"][0]["schema"]["enum"] == ["csv", "json", "html", "goodreads", "backup"]
    assert set(put["responses"]) >= {"200", "404", "422"}
    assert doc["components"]["schemas"]["ScheduleRequest"]["required"] == ["every", "keep"]
