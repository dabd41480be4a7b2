"""Beside BookLogr: the shipped nginx config, run by a real nginx, in front of `booklogr-tasks api`
(with a `booklogr-tasks listen`) and a stand-in for BookLogr's API, playing the calls BookLogr's
web app makes in its Data tab: list, request an export, poll until the list changes, download,
upload an import. Everything that is not /v1/tasks* or /v1/files* must reach BookLogr's API.

nginx comes from Debian, installed by local/nginx/ensure-nginx.sh when it is missing (as root);
without it the test is skipped, naming what is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import string
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.support import mint_token
from tests.helpers import seed_books, service, wait_until
from tests.integration.http_calls import CSV_HEADER, free_port, wait_healthy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "local" / "nginx" / "booklogr.conf.template"
ENSURE_NGINX = REPO / "local" / "nginx" / "ensure-nginx.sh"
COMPOSE_FILE = REPO / "docker-compose.booklogr.yml"
USER = 5


# --- the pieces ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    done = subprocess.run(
        ["sh", str(ENSURE_NGINX)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"no nginx binary: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


class StandIn(BaseHTTPRequestHandler):
    """Plays BookLogr's API: answers every request with JSON naming itself and the path."""

    seen: list[str]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(f"{self.command} {self.path}")
        body = json.dumps({"upstream": "booklogr-api", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def booklogr_api() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("RecordingStandIn", (StandIn,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def render(template: str, values: dict[str, str]) -> str:
    """What envsubst '${LISTEN_PORT} ...' (and the nginx image) do: only these variables."""
    rendered = string.Template(template).safe_substitute(values)
    missing = re.findall(r"\$\{(\w+)\}", rendered)
    assert not missing, f"the template uses variables nobody sets: {missing}"
    return rendered


@pytest.fixture
def proxy(
    nginx_binary: str, tmp_path: Path, booklogr_api: tuple[int, list[str]], tasks_api: str
) -> Iterator[str]:
    """The shipped config under a real nginx, with ports the test chose."""
    port = free_port()
    folder = tmp_path / "nginx"
    folder.mkdir()
    site = folder / "booklogr.conf"
    site.write_text(
        render(
            TEMPLATE.read_text(),
            {
                "LISTEN_PORT": f"127.0.0.1:{port}",
                "BOOKLOGR_API": f"127.0.0.1:{booklogr_api[0]}",
                "BOOKLOGR_TASKS_API": tasks_api.removeprefix("http://"),
            },
        )
    )
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    main = folder / "nginx.conf"
    main.write_text(
        f"""
daemon off;
worker_processes 1;
{"user root;" if os.geteuid() == 0 else ""}
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""
    )
    log = open(folder / "stdout.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [nginx_binary, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(main)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError((folder / "error.log").read_text())
            try:
                return call("GET", f"{base}/")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=30, interval=0.1, what="nginx to answer")
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


@pytest.fixture
def tasks_env(env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The service's environment; SINGLE_USER_MODE as the test's parameter says (else false)."""
    return {**env, "SINGLE_USER_MODE": getattr(request, "param", "false")}


@pytest.fixture
def tasks_api(tasks_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`booklogr-tasks api` and `booklogr-tasks listen`, as plain processes."""
    port = free_port()
    env = {**tasks_env, "UPLOAD_WAIT_SECONDS": "60"}  # the upload answers once its import ends
    # Every request arrives from nginx's address; nginx limits each real client.
    env["API_MAX_REQUESTS_PER_CLIENT"] = "1000"
    base = f"http://127.0.0.1:{port}"
    with (
        service(["api", "--port", str(port)], env, tmp_path / "api.log") as api,
        service(["listen"], env, tmp_path / "listener.log") as listener,
    ):
        wait_healthy(base, api, listener)
        yield base


def call(
    method: str,
    url: str,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), exc.read()


def _lower(headers: Any) -> dict[str, str]:
    """Header names in lower case: HTTP does not care how a server spells them."""
    return {name.lower(): value for name, value in headers.items()}


def form(file_bytes: bytes, fields: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """multipart/form-data as the web app's FormData sends it: the file first."""
    boundary = "----WebKitFormBoundaryk3yP9dT2xQ7mZr1B"
    out = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="booklogr.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + file_bytes
    for name, value in fields.items():
        out += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode()
    out += f"\r\n--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, out


# --- the web app's calls through the proxy --------------------------------------------------------


def web_app_flow(proxy: str, token: str | None, user: int, conn: Any) -> None:
    """The Data tab's calls, as BookLogr's web app makes them (no token in single-user mode)."""
    seed_books(conn, owner_id=user, count=4)

    # The Data tab mounts: no files yet, a 404 the web app ignores.
    status, _, body = call("GET", f"{proxy}/v1/files", token)
    assert status == 404 and set(json.loads(body)) == {"error", "message"}

    # "Request data": the toast shows response.data.message.
    request = json.dumps({"type": "csv_export", "data": {}}).encode()
    status, _, body = call(
        "POST", f"{proxy}/v1/tasks", token, request, {"Content-Type": "application/json"}
    )
    assert status == 202 and json.loads(body)["message"]

    # Polled every 2 s until the JSON body changes.
    def changed() -> list[dict[str, Any]] | None:
        status, _, body = call("GET", f"{proxy}/v1/files", token)
        return json.loads(body) if status == 200 else None

    listed = wait_until(changed, timeout=60, interval=0.2, what="the export in GET /v1/files")
    assert len(listed) == 1 and set(listed[0]) == {"id", "filename", "created_at"}
    datetime.fromisoformat(listed[0]["created_at"] + "Z")  # new Date(created_at + "Z")

    # "Download": the body as a blob, saved under the filename.
    filename = listed[0]["filename"]
    status, headers, exported = call("GET", f"{proxy}/v1/files/{filename}", token)
    assert status == 200, exported
    assert headers["content-disposition"] == f'attachment; filename="{filename}"'
    assert exported.decode("utf-8").startswith(CSV_HEADER)

    # "Import": the exported file itself, duplicates allowed, answered when the import is done.
    headers, body = form(exported, {"type": "csv", "allow_duplicates": "true"})
    status, _, answer = call("POST", f"{proxy}/v1/files", token, body, headers)
    assert status == 200, answer
    assert json.loads(answer)["message"] == "Imported 4/4 books."
    count = conn.execute("SELECT count(*) AS n FROM books WHERE owner_id = %s", (user,))
    assert count.fetchone()["n"] == 8


def test_booklogrs_web_app_calls_work_through_the_shipped_proxy(
    proxy: str, booklogr_api: tuple[int, list[str]], env: dict[str, str], conn: Any
) -> None:
    token = mint_token(USER)
    web_app_flow(proxy, token, USER, conn)

    # Everything else is BookLogr's: it reaches its API, and only that does.
    _, seen = booklogr_api
    before = len(seen)
    for path in ("/v1/books?status=Read", "/v1/profiles", "/v1/tasksfoo", "/v1/filesystem"):
        status, _, body = call("GET", f"{proxy}{path}", token)
        assert status == 200 and json.loads(body) == {"upstream": "booklogr-api", "path": path}
    assert seen[before:] == [
        "GET /v1/books?status=Read",
        "GET /v1/profiles",
        "GET /v1/tasksfoo",
        "GET /v1/filesystem",
    ]
    assert not [s for s in seen if re.match(r"\w+ /v1/(tasks|files)(/|$|\?)", s)]
    # This service's own routes reach it too (BookLogr has none of these).
    for path in ("/v1/exports", "/v1/schedules"):
        status, _, body = call("GET", f"{proxy}{path}", token)
        assert status == 200 and "items" in json.loads(body), path
    assert len(seen) == before + 4


@pytest.mark.parametrize("tasks_env", ["true"], indirect=True)
def test_single_user_mode_through_the_shipped_proxy(proxy: str, conn: Any) -> None:
    """SINGLE_USER_MODE=true, as BookLogr runs it: the web app sends no token, and every
    request is user 1's."""
    web_app_flow(proxy, None, 1, conn)
    status, _, body = call("GET", f"{proxy}/v1/tasks")
    assert status == 200 and {t["created_by"] for t in json.loads(body)["items"]} == {1}


def test_slow_and_anonymous_bodies_stop_at_the_proxy(proxy: str, tmp_path: Path) -> None:
    """Clients that trickle or pause a body, and anonymous large bodies: nginx holds them (its
    limits per client address, its body timeout, its body buffer), answers them itself, and
    the service stays free for everyone else. Bounded: 30 connections, each at most 40 s."""
    head = (
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    port = int(proxy.rsplit(":", 1)[1])
    stop = time.monotonic() + 40

    def stalled(_: int) -> bytes:
        """The head and one byte of the body, then nothing: nginx's body timeout cuts it."""
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(head + b"{")
            while time.monotonic() < stop:
                try:
                    return sock.recv(4096)[:12] or b"closed"
                except TimeoutError:
                    continue
                except OSError:
                    return b"closed"
        return b"still open"

    results: list[bytes] = []
    threads = [threading.Thread(target=lambda i=i: results.append(stalled(i))) for i in range(30)]
    for thread in threads:
        thread.start()
    # Meanwhile a client at another address is served.
    other = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0)
    )
    other.request("GET", "/v1/files", headers={"Authorization": f"Bearer {mint_token(9)}"})
    assert other.getresponse().status == 404  # no files: BookLogr's answer
    other.close()
    for thread in threads:
        thread.join(60)
    # Past 20 connections of one address: 429 at once; the rest cut by the body timeout (408
    # or closed).
    assert len(results) == 30
    assert sum(1 for r in results if r.startswith(b"HTTP/1.1 429")) >= 10, results
    assert all(r.startswith((b"HTTP/1.1 429", b"HTTP/1.1 408")) or r == b"closed" for r in results)

    # An anonymous 5 MB body: buffered by nginx, then refused by the service (401, JSON).
    status, _, body = call(
        "POST",
        f"{proxy}/v1/tasks",
        None,
        b"{" + b" " * 5_000_000,
        {"Content-Type": "application/json"},
    )
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    # A task body over MAX_BODY_BYTES never leaves nginx: its own JSON 413.
    status, _, body = call(
        "POST",
        f"{proxy}/v1/tasks",
        None,
        b"{" + b" " * 30_000_000,
        {"Content-Type": "application/json"},
    )
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
    # An upload with an expired token: the answer the web app refreshes its token on.
    headers, body = form(b"title,isbn\r\n" + b"x" * 2_000_000, {"type": "csv"})
    status, _, answer = call(
        "POST", f"{proxy}/v1/files", mint_token(9, lifetime=-60), body, headers
    )
    assert status == 401 and json.loads(answer)["msg"] == "Token has expired"
    # Over nginx's body limit: its own JSON 413, the body never sent on.
    status, _, body = call(
        "POST",
        f"{proxy}/v1/files",
        None,
        b"x" * 45_000_000,
        {"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"


# --- the compose file runs what the test runs -----------------------------------------------------


def test_the_compose_file_runs_this_proxy_config_in_front_of_both_apis() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]

    proxy = services["proxy"]
    template_mount = next(v for v in proxy["volumes"] if "booklogr.conf.template" in v)
    source, target = template_mount.split(":")[:2]
    assert (REPO / source).resolve() == TEMPLATE
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".template")
    variables = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert variables == set(proxy["environment"])
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert proxy["environment"]["BOOKLOGR_TASKS_API"] == f"api:{api_port}"
    assert proxy["environment"]["BOOKLOGR_API"] == "booklogr-api:5000"
    assert services["booklogr-api"]["image"].startswith("mozzo/booklogr:")
    assert services["booklogr-web"]["image"].startswith("mozzo/booklogr-web:")

    # One export folder: the same volume at the same path, which is everyone's EXPORT_FOLDER.
    for name in ("booklogr-api", "api", "listener"):
        spec = services[name]
        folder = spec["environment"]["EXPORT_FOLDER"]
        assert f"exports:{folder}" in spec["volumes"], name
    assert services["migrate"]["depends_on"] == {"booklogr-api": {"condition": "service_healthy"}}
    commands = {n: services[n]["command"][:2] for n in ("migrate", "api", "listener")}
    assert commands == {
        "migrate": ["booklogr-tasks", "migrate"],
        "api": ["booklogr-tasks", "api"],
        "listener": ["booklogr-tasks", "listen"],
    }
