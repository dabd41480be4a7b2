"""Deployed mode: the listener invokes one Lambda function per task type and never claims.

moto's Lambda only echoes payloads, so each test runs the job the invocation asks for
in-process, through the same entry point the functions call (runner.run_task).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from booklogr_tasks.core.settings import Settings, get_settings
from booklogr_tasks.jobs import known_types
from booklogr_tasks.worker.invokers import LocalInvoker, RemoteInvoker
from booklogr_tasks.worker.lambda_invoker import LambdaInvoker, lambda_client
from booklogr_tasks.worker.listener import Listener
from booklogr_tasks.worker.runner import run_task
from booklogr_tasks.worker.wiring import build_listener
from chalice.test import Client

from tests.api.support import FUNCTIONS, load_app
from tests.helpers import insert_task, seed_books, task_row, wait_until
from tests.integration import fake_aws as aws
from tests.integration.fake_aws import InvokeSpy, deploy_functions

# Fixtures this module uses.
fake_aws, bucket, lambda_runner = aws.fake_aws, aws.bucket, aws.lambda_runner


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lambda_settings(bucket: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TASK_INVOKER", "lambda")
    monkeypatch.setenv("TASK_FUNCTION_PREFIX", "booklogr-tasks-prod-")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def spy() -> InvokeSpy:
    return InvokeSpy()


def invoker_with(
    settings: Settings, spy: InvokeSpy, clock: FakeClock | None = None
) -> LambdaInvoker:
    client = lambda_client()  # the invoker's own client configuration (no retry sleeps)
    spy.attach(client)
    return LambdaInvoker(settings, client, clock=clock or FakeClock())


@pytest.fixture
def running_listener(lambda_settings: Settings, spy: InvokeSpy) -> Iterator[Listener]:
    listener = build_listener(lambda_settings, nickname="edge")
    assert isinstance(listener.invoker, LambdaInvoker)
    spy.attach(listener.invoker.client)
    thread = threading.Thread(target=listener.run, name="listener")
    thread.start()
    try:
        yield listener
    finally:
        listener.request_stop()
        thread.join(30)
        assert not thread.is_alive(), "listener did not stop"


def test_listener_invokes_the_function_of_each_task_type_and_never_claims(
    lambda_settings: Settings,
    running_listener: Listener,
    spy: InvokeSpy,
    conn,
    lambda_runner: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASK_FUNCTION_JSON_EXPORT", "custom-json-exporter")
    deploy_functions(["booklogr-tasks-prod-csv_export", "custom-json-exporter"])
    seed_books(conn, owner_id=7)
    csv_task = insert_task(conn, "csv_export", {"owner_id": 7}, created_by=7)
    json_task = insert_task(conn, "json_export", {"owner_id": 7}, created_by=7)

    wait_until(lambda: len(spy.calls) >= 2, what="two invocations")
    calls = list(spy.calls)
    by_task = {json.loads(call["Payload"])["task_id"]: call for call in calls}
    assert by_task[csv_task]["FunctionName"] == "booklogr-tasks-prod-csv_export"
    assert by_task[json_task]["FunctionName"] == "custom-json-exporter"
    for call in calls:
        assert call["InvocationType"] == "Event"
        assert set(json.loads(call["Payload"])) == {"task_id"}
    # Invoking is not claiming: the function does that.
    for task_id in (csv_task, json_task):
        row = task_row(conn, task_id)
        assert (row["status"], row["worker"], row["attempts"]) == ("fresh", None, 0)

    # What the functions do with those payloads, run here.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "booklogr-tasks-prod-csv_export")
    for task_id in by_task:
        assert run_task(task_id) == "success"
    row = task_row(conn, csv_task)
    assert row["status"] == "success"
    assert row["worker"].startswith("booklogr-tasks-prod-csv_export:")


@pytest.mark.parametrize("fault", ["missing", "throttled"])
def test_aws_refusal_leaves_the_task_fresh_and_a_later_sweep_runs_it(
    fault: str,
    lambda_settings: Settings,
    spy: InvokeSpy,
    conn,
    lambda_runner: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    function = lambda_settings.function_name("csv_export")
    deploy_functions([function])
    spy.failing[function] = fault
    clock = FakeClock()
    invoker = invoker_with(lambda_settings, spy, clock)
    listener = Listener(lambda_settings, ["csv_export"], "edge:1", invoker)
    seed_books(conn, owner_id=3)
    first = insert_task(conn, "csv_export", {"owner_id": 3}, created_by=3)
    second = insert_task(conn, "csv_export", {"owner_id": 3}, created_by=3)

    for _ in range(3):  # three sweeps while AWS refuses
        listener._invoke_fresh(invoker, conn)
        clock.now += lambda_settings.task_sweep_seconds
    assert set(spy.task_ids()) == {first}, "the second task must not be tried while refused"
    for task_id in (first, second):
        assert task_row(conn, task_id)["status"] == "fresh"
    warnings = [r.getMessage() for r in caplog.records if "lambda invoke failed" in r.getMessage()]
    assert len(warnings) == 1, "one warning per function and error, not one per task or sweep"

    spy.failing.clear()  # AWS recovers
    spy.calls.clear()
    listener._invoke_fresh(invoker, conn)
    assert sorted(spy.task_ids(function)) == [first, second]
    assert "lambda invoke works again" in caplog.messages
    for task_id in spy.task_ids():
        assert run_task(task_id) == "success"
        assert task_row(conn, task_id)["status"] == "success"
    listener.invoker.shutdown(0)


def test_duplicate_invocation_is_harmless(
    lambda_settings: Settings, conn, lambda_runner: None
) -> None:
    seed_books(conn, owner_id=5)
    task_id = insert_task(conn, "csv_export", {"owner_id": 5}, created_by=5)
    assert run_task(task_id) == "success"
    before = task_row(conn, task_id)
    # AWS may deliver an asynchronous event twice.
    assert run_task(task_id) == "skipped"
    after = task_row(conn, task_id)
    assert (after["status"], after["attempts"], after["worker"], after["updated_on"]) == (
        before["status"],
        before["attempts"],
        before["worker"],
        before["updated_on"],
    )
    rows = conn.execute("SELECT count(*) AS n FROM csv_export WHERE task_id = %s", (task_id,))
    assert rows.fetchone()["n"] == 1


def test_lambda_invoker_is_not_a_local_runner(lambda_settings: Settings, spy: InvokeSpy) -> None:
    invoker = invoker_with(lambda_settings, spy)
    # The listener claims only for a LocalInvoker; this one can only hand ids on.
    assert isinstance(invoker, RemoteInvoker)
    assert not isinstance(invoker, LocalInvoker)
    assert not hasattr(invoker, "start")


# --- the functions themselves, invoked as Lambda would ----------------------------------------


def _csv(header: str, row: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header.split(","))
    writer.writerow(row)
    return out.getvalue()


GOODREADS_HEADER = (
    "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,Average Rating,"
    "Publisher,Binding,Number of Pages,Year Published,Original Publication Year,Date Read,"
    "Date Added,Bookshelves,Bookshelves with positions,Exclusive Shelf,My Review,Spoiler,"
    "Private Notes,Read Count,Owned Copies"
)
STORYGRAPH_HEADER = (
    "Title,Authors,Contributors,ISBN/UID,Format,Read Status,Date Added,Last Date Read,"
    "Dates Read,Read Count,Moods,Pace,Character- or Plot-Driven?,Strong Character Development?,"
    "Loveable Characters?,Diverse Characters?,Flawed Characters?,Star Rating,Review,"
    "Content Warnings,Content Warning Description,Tags,Owned?"
)
# One valid task of every type; the test fails when a type is added without an entry here.
TASK_DATA: dict[str, dict[str, object]] = {
    "calibre_import": {"csv": '\ufefftitle,authors,isbn\r\n"Emma","Jane Austen","0141439580"\r\n'},
    "csv_export": {},
    "html_export": {},
    "json_export": {},
    "goodreads_export": {},
    "backup_export": {},
    "backup_import": {
        "csv": '{"format": "booklogr-backup", "version": 1, "books": [{"title": "Restored"}]}'
    },
    "booklogr_csv_import": {
        "csv": _csv(
            "title,isbn,description,reading_status,current_page,total_pages,author,rating,notes",
            ["Dune", "9780441013593", "", "Read", "0", "412", "Frank Herbert", "4.50", "[]"],
        )
    },
    "goodreads_import": {
        "csv": _csv(
            GOODREADS_HEADER,
            [
                "1",
                "Dune",
                "Frank Herbert",
                "Herbert, Frank",
                "",
                '="0441013597"',
                '="9780441013593"',
                "5",
                "4.25",
                "Ace",
                "Paperback",
                "412",
                "2005",
                "1965",
                "2021/03/04",
                "2021/01/01",
                "",
                "",
                "read",
                "",
                "",
                "",
                "1",
                "0",
            ],
        )
    },
    "storygraph_import": {
        "csv": _csv(
            STORYGRAPH_HEADER,
            [
                "Dune",
                "Frank Herbert",
                "",
                "9780441013593",
                "paperback",
                "read",
                "2021/01/01",
                "2021/03/04",
                "2021/03/04",
                "1",
                "adventurous",
                "medium",
                "",
                "",
                "",
                "",
                "",
                "4.5",
                "",
                "",
                "",
                "",
                "No",
            ],
        )
    },
}


@pytest.fixture(scope="module")
def app_module() -> Any:
    return load_app()


def test_every_task_type_has_a_function_that_runs_it_once(
    lambda_settings: Settings, conn, lambda_runner: None, app_module: Any
) -> None:
    assert sorted(TASK_DATA) == known_types()
    seed_books(conn, owner_id=8, count=3)
    with Client(app_module.app, stage_name="local", project_dir=str(FUNCTIONS)) as client:
        for task_type, data in TASK_DATA.items():
            task_id = insert_task(conn, task_type, {"owner_id": 8, **data}, created_by=8)
            first = client.lambda_.invoke(task_type, {"task_id": task_id}).payload
            assert first == {"task_id": task_id, "task_type": task_type, "status": "success"}
            row = task_row(conn, task_id)
            assert (row["status"], row["attempts"]) == ("success", 1), (task_type, row["error"])
            # AWS may deliver an asynchronous event twice: the second finds nothing to do.
            second = client.lambda_.invoke(task_type, {"task_id": task_id}).payload
            assert second["status"] == "skipped"
            assert task_row(conn, task_id) == row
