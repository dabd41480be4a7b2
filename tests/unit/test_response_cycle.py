"""How `booklogr-tasks api` writes an answer (http/server.py's cycle around uvicorn's)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from booklogr_tasks.http.server import _ResponseCycle
from uvicorn.protocols.http.flow_control import FlowControl


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(transport: Recorder, *, keep_alive: bool = True, method: str = "GET") -> _ResponseCycle:
    done: list[bool] = []
    return _ResponseCycle(
        scope={"method": method},  # type: ignore[arg-type]
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: done.append(True),
    )


def start(status: int, body: bytes, **extra: bytes) -> dict[str, Any]:
    headers = [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body))]
    return {
        "type": "http.response.start",
        "status": status,
        "headers": headers + [(k.replace("_", "-").encode(), v) for k, v in extra.items()],
    }


def test_head_and_body_go_out_in_one_write_with_names_as_given() -> None:
    transport = Recorder()

    async def answer() -> None:
        c = cycle(transport)
        await c.send(start(202, b'{"a":1}', Retry_After=b"2"))
        assert transport.writes == []  # the head waits for the body
        await c.send({"type": "http.response.body", "body": b'{"a":1}', "more_body": False})

    asyncio.run(answer())
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202")
    assert b"\r\nContent-Type: application/json" in head
    assert b"\r\nRetry-After: 2" in head
    assert body == b'{"a":1}'
    assert not transport.closed


def test_a_streamed_body_sends_the_head_with_its_first_piece_then_each_piece() -> None:
    transport = Recorder()

    async def answer() -> None:
        c = cycle(transport)
        await c.send(start(200, b"abcdef"))
        for piece, more in ((b"ab", True), (b"cd", True), (b"ef", False)):
            await c.send({"type": "http.response.body", "body": piece, "more_body": more})

    asyncio.run(answer())
    assert len(transport.writes) == 3
    assert transport.writes[0].startswith(b"HTTP/1.1 200")
    assert transport.writes[0].endswith(b"\r\n\r\nab")
    assert transport.writes[1:] == [b"cd", b"ef"]


def test_a_closing_answer_is_written_before_the_connection_closes() -> None:
    transport = Recorder()

    async def answer() -> None:
        c = cycle(transport, keep_alive=False)
        await c.send(start(413, b"{}", Connection=b"close"))
        await c.send({"type": "http.response.body", "body": b"{}", "more_body": False})

    asyncio.run(answer())
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n{}")
    assert transport.closed


def test_nothing_is_written_to_a_client_that_went_away() -> None:
    transport = Recorder()

    async def answer() -> None:
        c = cycle(transport)
        await c.send(start(200, b"{}"))
        c.disconnected = True
        await c.send({"type": "http.response.body", "body": b"{}", "more_body": False})

    asyncio.run(answer())
    assert transport.writes == []
