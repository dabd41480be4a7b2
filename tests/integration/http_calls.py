"""Talking to a running API over real HTTP, the way curl would, and watching its processes."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

import jwt
import psutil

from tests.helpers import ServiceProcess, wait_until

CSV_HEADER = "title,isbn,description,reading_status,current_page,total_pages,author,rating,notes"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_for(secret: str, user_id: int) -> str:
    return jwt.encode({"id": user_id, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")


def call(
    method: str, url: str, token: str | None = None, body: Any = None
) -> tuple[int, Message, bytes]:
    """Status, headers (looked up in any case, as HTTP has them) and body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def healthy(base_url: str) -> bool:
    try:
        return call("GET", f"{base_url}/healthz")[0] == 200
    except OSError:
        return False


def wait_healthy(base_url: str, *procs: ServiceProcess, timeout: float = 45.0) -> None:
    def check() -> bool:
        for proc in procs:
            if proc.proc.poll() is not None:
                raise AssertionError(f"{proc.args} exited early:\n{proc.log()}")
        return healthy(base_url)

    wait_until(check, timeout=timeout, interval=0.2, what=f"{base_url}/healthz to answer 200")


def export_csv(base_url: str, token: str | None) -> str:
    """Create a csv_export, poll it to success and download the file; return its text."""
    status, headers, body = call(
        "POST", f"{base_url}/v1/tasks", token, {"type": "csv_export", "data": {}}
    )
    assert status == 202, body
    task_id = json.loads(body)["task_id"]
    assert headers["Location"].endswith(f"/v1/tasks/{task_id}")

    def finished() -> dict[str, Any] | None:
        status, _, body = call("GET", f"{base_url}/v1/tasks/{task_id}", token)
        assert status == 200, body
        task: dict[str, Any] = json.loads(body)
        return task if task["status"] in ("success", "failure") else None

    task = wait_until(finished, timeout=30, interval=0.2, what=f"task {task_id} to finish")
    assert task["status"] == "success", task
    status, _, file = call("GET", base_url + task["result"]["download"], token)
    assert status == 200, file
    return file.decode("utf-8")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.NoSuchProcess:
            pass
    return running


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in alive(procs):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
