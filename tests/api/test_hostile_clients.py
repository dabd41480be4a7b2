"""`booklogr-tasks api` played by hostile clients, at its default limits: anonymous bodies,
parallel large uploads, bodies trickled one byte at a time. Every loop here is bounded in count
and time, talks only to 127.0.0.1 (and 127.0.0.2, another client address on the same machine)
and stops by itself; the assertions are outcomes (answers, closed connections, RSS bounds with
generous margins), never timings. bench/http.py measures the same attacks with their targets."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
import requests

from tests.api.support import RunningApi, api_process, mint_token
from tests.helpers import throwaway_database

pytestmark = pytest.mark.slow

MB = 1_000_000


class Server(RunningApi):
    def rss(self) -> float:
        """MB resident in the server's processes (granian's supervisor and its worker)."""
        root = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / MB


@pytest.fixture(scope="module")
def server(
    pg_server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hostile")
    settings = {
        "UPLOAD_WAIT_SECONDS": "0",  # no listener runs: the uploads' answer is 202 at once
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    try:
        with (
            throwaway_database(pg_server_url, template_db) as url,
            api_process(url, folder, settings) as running,
        ):
            yield Server(running.base, running.port, url, folder, running.proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_parallel(count: int, work: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * count

    def run(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


class Peak:
    """The largest RSS seen while the block runs (sampled every 50 ms)."""

    def __init__(self, server: Server) -> None:
        self.server, self.mb = server, server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.mb = max(self.mb, self.server.rss())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _answer_of(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def test_anonymous_bodies_to_routes_that_take_none_are_never_read(server: Server) -> None:
    """190 clients each send GET /healthz with a 9.9 MB body and keep sending: every one is
    answered 400 without the body being read, its connection closed, and the server's memory
    does not follow the bodies."""

    def anonymous(_: int) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 9900000\r\n\r\n")
            sent, piece = 0, b"a" * 65536
            try:
                while sent < 9_900_000:
                    sock.sendall(piece)
                    sent += len(piece)
            except OSError:
                pass  # the server closed the connection: what it should do
            return sent, _answer_of(sock)

    before = server.rss()
    with Peak(server) as peak:
        results = in_parallel(190, anonymous)
    for sent, answer in results:  # type: ignore[misc]
        assert answer.startswith(b"HTTP/1.1 400") or answer == b"", answer[:100]
        assert sent < 9_900_000, "a whole body was taken in"
    assert peak.mb - before < 50, (before, peak.mb)


def test_parallel_large_uploads_stream_to_the_store(server: Server) -> None:
    """30 uploads of 31 MB at once (each user its own, within their quota): every file is
    stored whole, while the server's memory grows by at most 100 MB, and gives it back."""
    size = 31 * MB
    data = b"title,isbn\r\n" + b"x" * (size - 12)

    def upload(i: int) -> int:
        response = requests.post(
            f"{server.base}/v1/files",
            headers={"Authorization": f"Bearer {mint_token(1000 + i)}"},
            files={"file": ("library.csv", data)},
            data={"type": "csv"},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        return int(response.json()["task_id"])

    before = server.rss()
    with Peak(server) as peak:
        in_parallel(30, upload)
    stored = list((server.folder / "exports" / "uploads").rglob("*"))
    files = [path for path in stored if path.is_file()]
    assert len(files) == 30 and all(path.stat().st_size == size for path in files)
    assert peak.mb - before <= 100, (before, peak.mb)
    time.sleep(10)
    assert server.rss() - before <= 50, (before, server.rss())
    shutil.rmtree(server.folder / "exports" / "uploads")


def test_trickled_bodies_are_cut_and_never_hold_the_server(server: Server) -> None:
    """200 connections trickle a body one byte every 2 s. Past the per-address limit they are
    refused at once (429); the rest are cut (408) once their average rate is below the minimum.
    Meanwhile a client at another address is answered every time."""
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint_token(5)}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    stop = time.monotonic() + 40

    def trickle(_: int) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head)
            while time.monotonic() < stop:
                try:
                    sock.sendall(b" ")
                    answer = sock.recv(4096)
                    return answer  # the server answered (and closes)
                except TimeoutError:
                    continue  # no answer yet: one more byte
                except OSError:
                    return b"closed"
            return b"still open after 40 s"

    probes: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            with socket.create_connection(("127.0.0.1", server.port), 10, ("127.0.0.2", 0)) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                probes.append(int(s.recv(4096).split(b" ", 2)[1]))
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        answers = in_parallel(200, trickle)
    finally:
        done.set()
        prober.join()
    statuses = {bytes(a).split(b" ", 2)[1] if bytes(a).startswith(b"HTTP/") else a for a in answers}
    assert statuses <= {b"408", b"429", b"closed"}, statuses
    assert b"408" in statuses and b"429" in statuses
    assert probes and set(probes) == {200}, probes
