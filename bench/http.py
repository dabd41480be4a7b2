"""7. The HTTP server: `booklogr-tasks api` (granian) against `chalice local` and a bare endpoint.

Load: CLIENTS keep-alive connections, each creating a task (POST /v1/tasks) and reading its
status (GET /v1/tasks/<id>) in a loop for the mode's duration, after a warm-up. The client is
an asyncio loop in this process speaking HTTP/1.1 by hand (cheap enough not to be the
bottleneck). Requests are spread over many users, each with a real token, as on a real install.

Compared, in the same run, with the API at its defaults (API_WORKERS, and the log level INFO,
at which it writes a JSON line per task created and per failed request, none per successful
status read):
- the same handlers (functions/app.py) under `chalice local`, also at INFO: the ratio targeted
  (at least 4x);
- a bare endpoint doing the same INSERT / SELECT with raw psycopg under the same server with the
  same number of worker processes (bench/http_baseline.py), which logs nothing: what the app's
  own work costs (target at least 0.6x);
- for information, the API with two worker processes, at log level WARNING (no line for any
  request), and with tokens as BookLogr issues them: each carries a `jti`, which the API looks
  up in BookLogr's revoked_tokens (present in this database, as beside BookLogr) on every
  request; the other cases' tokens have none, so they make no such look-up.

Memory (each case on a fresh API process, API_WORKERS=1; peak RSS, VmHWM, after a warm-up vs
after the case): three concurrent downloads of one large export (target growth < 50 MB), and
four anonymous requests that try to send a 250 MB body each (target growth < 20 MB).

Hostile clients, one after another on one fresh API process at its defaults: anonymous
requests sending a 9.9 MB body each to GET /healthz (target growth < 50 MB), parallel 31 MB
uploads (target growth <= 100 MB), connections trickling a body one byte every 2 s while a
client at another address polls /healthz (target p95 < 1 s, every trickle closed within 35 s),
and the RSS 10 s after it all (target within 50 MB of where it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.db.pool import connect

from bench import harness
from bench.harness import Mode, Result, Row

NAME = "http"
TITLE = "HTTP server: granian vs chalice local, memory bounds, hostile clients"
CLIENTS = 20
USERS = 2000
SECRET = "bench-secret-key-of-sufficient-length-0123456789"
RPS_TARGET = 4.0
P99_TARGET_MS = 50.0
BASELINE_TARGET = 0.6
DOWNLOAD_RSS_TARGET_MB = 50
BODY_RSS_TARGET_MB = 20
ANONYMOUS_RSS_TARGET_MB = 50
UPLOADS_RSS_TARGET_MB = 100
SETTLED_RSS_TARGET_MB = 50
TRICKLE_P95_TARGET_MS = 1000
TRICKLE_CLOSED_TARGET_S = 35
MB = 1_000_000
REVOKED_TOKENS = 10_000  # BookLogr's logouts so far, in the informational case
DEFAULT_LOG_LEVEL = "INFO"  # POWERTOOLS_LOG_LEVEL's default: what users run


@dataclass(frozen=True)
class Size:
    seconds: float  # of load per server in all, split into `rounds` runs
    warmup: float
    download_mb: int
    body_mb: int
    rounds: int = 1
    anonymous: int = 190  # anonymous 9.9 MB bodies at once
    uploads: int = 30  # parallel uploads of upload_mb each
    upload_mb: int = 31
    trickles: int = 200
    grace: str | None = None  # API_BODY_GRACE_SECONDS, when not the default


SIZES = {
    "full": Size(seconds=30, warmup=3, download_mb=120, body_mb=250, rounds=5),
    "quick": Size(seconds=5, warmup=1, download_mb=40, body_mb=60, anonymous=60, uploads=10),
    "smoke": Size(
        seconds=1,
        warmup=0.3,
        download_mb=2,
        body_mb=2,
        rounds=2,
        anonymous=5,
        uploads=2,
        upload_mb=1,
        trickles=5,
        grace="1",
    ),
}


# --- servers -----------------------------------------------------------------------------------


def server_env(url: str, tmp: Path, log_level: str = DEFAULT_LOG_LEVEL) -> dict[str, str]:
    env = harness.process_env(url, tmp / "exports", log_level)
    env.update(
        {
            "AUTH_SECRET_KEY": SECRET,
            "SINGLE_USER_MODE": "false",
            # The load creates tasks nobody runs: no cap may refuse them.
            "MAX_PENDING_TASKS_PER_USER": "1000000",
        }
    )
    for key in ("EXPORT_BUCKET", "AWS_LAMBDA_FUNCTION_NAME"):
        env.pop(key, None)
    return env


def api_command(port: int) -> list[str]:
    return [sys.executable, "-m", "booklogr_tasks.cli", "api", "--port", str(port)]


def chalice_local_command(port: int) -> list[str]:
    chalice = str(Path(sys.executable).with_name("chalice"))
    return [
        chalice,
        "--project-dir",
        str(harness.REPO_ROOT / "functions"),
        "local",
        "--port",
        str(port),
        "--stage",
        "local",
        "--no-autoreload",
    ]


def baseline_command(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.http_baseline", "--port", str(port)]


def wait_healthy(proc: harness.Proc, port: int, path: str = "/healthz") -> None:
    def answers() -> bool:
        proc.check_alive()
        try:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            client.request("GET", path)
            return client.getresponse().status < 500
        except OSError:
            return False

    harness.wait_for(answers, 60, f"a server on port {port}", interval=0.1)


# --- the load ----------------------------------------------------------------------------------


def tokens() -> list[str]:
    exp = int(time.time()) + 3600
    return [jwt.encode({"id": u, "exp": exp}, SECRET, "HS256") for u in range(1, USERS + 1)]


def booklogr_tokens() -> list[str]:
    """Tokens as BookLogr's login issues them (flask-jwt-extended's claims): each has a `jti`,
    which the API looks up in BookLogr's revoked_tokens on every request."""
    now = int(time.time())
    claims = {"fresh": False, "iat": now, "nbf": now, "exp": now + 3600, "type": "access"}
    return [
        jwt.encode(
            {**claims, "id": u, "jti": str(uuid.uuid4()), "sub": f"reader{u}@example.org"},
            SECRET,
            "HS256",
        )
        for u in range(1, USERS + 1)
    ]


def beside_booklogr(url: str, revoked: int = REVOKED_TOKENS) -> None:
    """BookLogr's revoked_tokens as its logouts leave it, with the index this service's
    migration 0007 adds to it."""
    with connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE revoked_tokens (id serial PRIMARY KEY, jti varchar(120))")
        conn.execute(
            "INSERT INTO revoked_tokens (jti) SELECT gen_random_uuid()::text "
            "FROM generate_series(1, %s)",
            (revoked,),
        )
        conn.execute("CREATE INDEX booklogr_tasks_revoked_tokens_jti_idx ON revoked_tokens (jti)")


@dataclass
class Load:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] | None = None
    seconds: float = 0.0  # how long the run took, the clients' last answers included


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, bytes, bool]:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _client(index: int, port: int, auth: list[str], stop: float, load: Load) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"type": "bench_noop", "data": {}}'
    n = index
    try:
        while time.perf_counter() < stop:
            n += CLIENTS
            token = auth[n % len(auth)]
            post = (
                f"POST /v1/tasks HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            for step in ("post", "get"):
                started = time.perf_counter()
                try:
                    if step == "post":
                        status, answer, close = await _exchange(reader, writer, post)
                        ok = status == 202
                        task_id = json.loads(answer)["task_id"] if ok else None
                    else:
                        get = (
                            f"GET /v1/tasks/{task_id} HTTP/1.1\r\nHost: bench\r\n"
                            f"Authorization: Bearer {token}\r\n\r\n"
                        ).encode()
                        status, answer, close = await _exchange(reader, writer, get)
                        ok = status == 200
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok, close = False, True
                assert load.latencies_ms is not None
                load.latencies_ms.append((time.perf_counter() - started) * 1000)
                load.requests += 1
                if not ok:
                    load.errors += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if not ok:
                    break  # no task to look at
    finally:
        writer.close()


def run_load(port: int, seconds: float, auth: list[str]) -> Load:
    async def main() -> Load:
        load = Load(latencies_ms=[])
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_client(i, port, auth, stop, load) for i in range(CLIENTS)))
        return load

    return asyncio.run(main())


def measure(proc: harness.Proc, port: int, seconds: float, auth: list[str]) -> Load:
    started = time.perf_counter()
    load = run_load(port, seconds, auth)
    load.seconds = time.perf_counter() - started
    proc.check_alive()
    return load


def summary(loads: list[Load]) -> dict[str, float]:
    """Requests/s over all of a server's runs, latency percentiles over all its requests, and
    the slowest and fastest of its runs."""
    latencies = [ms for load in loads for ms in load.latencies_ms or ()] or [0.0]
    rates = [load.requests / load.seconds for load in loads]
    requests = sum(load.requests for load in loads)
    return {
        "requests": requests,
        "errors": sum(load.errors for load in loads),
        "rps": requests / sum(load.seconds for load in loads),
        "rps_min": min(rates),
        "rps_max": max(rates),
        "p50_ms": harness.percentile(latencies, 50),
        "p99_ms": harness.percentile(latencies, 99),
    }


CASES = (
    # label, command, API_WORKERS (None: the default), log level, BookLogr's tokens
    ("api", "api", None, DEFAULT_LOG_LEVEL, False),
    ("chalice_local", "chalice_local", None, DEFAULT_LOG_LEVEL, False),
    ("baseline", "baseline", None, DEFAULT_LOG_LEVEL, False),
    ("api_2_workers", "api", 2, DEFAULT_LOG_LEVEL, False),
    ("api_warning", "api", None, "WARNING", False),
    ("api_booklogr_tokens", "api", None, DEFAULT_LOG_LEVEL, True),
)


def throughput(url: str, tmp: Path, size: Size) -> dict[str, dict[str, float]]:
    """The API and the bare endpoint at the default API_WORKERS and log level (what users get),
    chalice local (one process, its only way), the API with two worker processes, and the API
    at log level WARNING. All run at once, idle but for the one under load, and take turns:
    `size.rounds` runs each, in the same order every round, so that a machine that changes
    speed during the benchmark (a shared one does, by a third within minutes) changes it for
    every server alike, rather than for whichever ran at the time."""
    commands = {
        "api": api_command,
        "chalice_local": chalice_local_command,
        "baseline": baseline_command,
    }
    plain, booklogr = tokens(), booklogr_tokens()
    beside_booklogr(url)
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[harness.Proc, int, list[str]]] = {}
        for label, command, workers, log_level, jti in CASES:
            env = server_env(url, tmp, log_level)
            env.pop("API_WORKERS", None)
            if workers is not None:
                env["API_WORKERS"] = str(workers)
            port = harness_free_port()
            (proc,) = stack.enter_context(
                harness.processes([commands[command](port)], env, tmp, label)
            )
            servers[label] = (proc, port, booklogr if jti else plain)
        for proc, port, auth in servers.values():
            wait_healthy(proc, port, "/v1/tasks/1")
            run_load(port, size.warmup, auth)
        loads: dict[str, list[Load]] = {label: [] for label in servers}
        for _ in range(size.rounds):
            for label, (proc, port, auth) in servers.items():
                loads[label].append(measure(proc, port, size.seconds / size.rounds, auth))
    return {label: summary(runs) for label, runs in loads.items()}


def harness_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- memory --------------------------------------------------------------------------------------


def big_export(url: str, folder: Path, megabytes: int) -> str:
    """A csv_export row of user 1 whose file is `megabytes` MB; its download path."""
    line = b"A title,9780000000000,a description,Read,1,300,An Author,4.00,[]\n"
    path = folder / "1" / "bench-big.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = line * (1024 * 1024 // len(line) + 1)
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(block[: 1024 * 1024])
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO csv_export (filename, owner_id) VALUES (%s, 1) RETURNING id",
            ("1/bench-big.csv",),
        ).fetchone()
    assert row is not None
    return f"/v1/exports/csv/{row['id']}"


def download(port: int, path: str, token: str, expected: int) -> None:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    client.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = client.getresponse()
    if response.status != 200:
        raise RuntimeError(f"download answered {response.status}")
    got = 0
    while chunk := response.read(1024 * 1024):
        got += len(chunk)
    if got != expected:
        raise RuntimeError(f"download got {got} of {expected} bytes")


def anonymous_body(port: int, megabytes: int) -> int:
    """Try to POST `megabytes` MB without a token; the status the server answered."""
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {megabytes * 1024 * 1024}\r\n\r\n"
    ).encode()
    chunk = b"0" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        try:
            for _ in range(megabytes):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: what it should do
        answer = b""
        try:
            while b"\r\n" not in answer and (part := sock.recv(4096)):
                answer += part
        except OSError:
            return 0
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0


def in_parallel(fn: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    results: list[Any] = [None] * len(args)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fn(*args[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def memory(url: str, tmp: Path, size: Size) -> dict[str, float]:
    # One worker process: the bounds are per process, and the one measured must be the one
    # serving (with several, the process started is only their supervisor).
    env = {**server_env(url, tmp), "API_WORKERS": "1"}
    token = tokens()[0]
    path = big_export(url, tmp / "exports", size.download_mb)
    expected = size.download_mb * 1024 * 1024
    found: dict[str, float] = {}
    port = harness_free_port()
    with harness.processes([api_command(port)], env, tmp, "mem-downloads") as (proc,):
        wait_healthy(proc, port)
        download(port, path, token, expected)  # warm-up: every code path once
        before = proc.memory_kb("VmHWM")
        in_parallel(download, [(port, path, token, expected)] * 3)
        found["downloads_growth_mb"] = (proc.memory_kb("VmHWM") - before) / 1024
        found["idle_mb"] = before / 1024
    port = harness_free_port()
    with harness.processes([api_command(port)], env, tmp, "mem-bodies") as (proc,):
        wait_healthy(proc, port)
        anonymous_body(port, 1)
        before = proc.memory_kb("VmHWM")
        statuses = in_parallel(anonymous_body, [(port, size.body_mb)] * 4)
        found["bodies_growth_mb"] = (proc.memory_kb("VmHWM") - before) / 1024
        found["bodies_refused"] = sum(1 for s in statuses if s == 401)
    return found


# --- hostile clients -------------------------------------------------------------------------


def anonymous_healthz_body(port: int) -> bool:
    """GET /healthz with a 9.9 MB body, sent until the server closes; whether it closed
    before the whole body was taken."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nContent-Length: 9900000\r\n\r\n")
        sent, piece = 0, b"a" * 65536
        try:
            while sent < 9_900_000:
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            return True
    return False


def upload(port: int, user: int, megabytes: int) -> int:
    """POST /v1/files with a `megabytes` MB file; the status."""
    boundary = "benchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ncsv\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        "title,isbn\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = megabytes * MB
    token = jwt.encode({"id": 100 + user, "exp": int(time.time()) + 3600}, SECRET, "HS256")
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    client.putrequest("POST", "/v1/files")
    client.putheader("Authorization", f"Bearer {token}")
    client.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    client.putheader("Content-Length", str(len(head) + size + len(tail)))
    client.endheaders()
    client.send(head)
    block = b"x" * MB
    for _ in range(megabytes):
        client.send(block)
    client.send(tail)
    return client.getresponse().status


def trickle(port: int, stop: float) -> tuple[bytes, float]:
    """POST /v1/tasks with a body sent one byte every 2 s; the status it ended with and how
    long the connection lasted."""
    token = jwt.encode({"id": 7, "exp": int(time.time()) + 3600}, SECRET, "HS256")
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(head)
        while time.monotonic() < stop:
            try:
                sock.sendall(b" ")
                answer = sock.recv(4096)
                return answer[9:12] or b"closed", time.monotonic() - started
            except TimeoutError:
                continue
            except OSError:
                return b"closed", time.monotonic() - started
    return b"open", time.monotonic() - started


def probe_healthz(port: int, done: threading.Event, latencies: list[float]) -> None:
    """GET /healthz from another client address (127.0.0.2) every 100 ms until `done`."""
    while not done.is_set():
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            ok = sock.recv(4096).startswith(b"HTTP/1.1 200")
        latencies.append((time.perf_counter() - started) * 1000 if ok else float("inf"))
        time.sleep(0.1)


def attacks(url: str, tmp: Path, size: Size) -> dict[str, float]:
    env = {
        **server_env(url, tmp),
        "API_WORKERS": "1",
        "UPLOAD_WAIT_SECONDS": "0",  # no listener runs: the uploads' answer is 202 at once
        "UPLOAD_QUOTA_BYTES": str(10**12),
    }
    if size.grace is not None:
        env["API_BODY_GRACE_SECONDS"] = size.grace
    found: dict[str, float] = {}
    port = harness_free_port()
    with harness.processes([api_command(port)], env, tmp, "attacks") as (proc,):
        wait_healthy(proc, port)
        in_parallel(upload, [(port, 0, 1)])  # warm-up: every code path once
        start = proc.memory_kb("VmRSS") / 1024
        before = proc.memory_kb("VmHWM") / 1024
        closed = in_parallel(anonymous_healthz_body, [(port,)] * size.anonymous)
        found["anonymous_growth_mb"] = proc.memory_kb("VmHWM") / 1024 - before
        found["anonymous_closed"] = sum(closed)
        before = proc.memory_kb("VmHWM") / 1024
        statuses = in_parallel(upload, [(port, i, size.upload_mb) for i in range(size.uploads)])
        found["uploads_growth_mb"] = proc.memory_kb("VmHWM") / 1024 - before
        found["uploads_accepted"] = sum(1 for status in statuses if status == 202)
        latencies: list[float] = []
        done = threading.Event()
        prober = threading.Thread(target=probe_healthz, args=(port, done, latencies))
        prober.start()
        try:
            stop = time.monotonic() + 60
            ends = in_parallel(trickle, [(port, stop)] * size.trickles)
        finally:
            done.set()
            prober.join()
        found["trickle_p95_ms"] = harness.percentile(latencies or [float("inf")], 95)
        found["trickle_probes"] = len(latencies)
        found["trickle_longest_s"] = max(seconds for _, seconds in ends)
        found["trickles_cut"] = sum(1 for status, _ in ends if status in (b"408", b"429"))
        time.sleep(10)
        found["settled_growth_mb"] = proc.memory_kb("VmRSS") / 1024 - start
    return found


# --- the result ------------------------------------------------------------------------------


def _against_local(metric: str, run: dict[str, float], local: dict[str, float], note: str) -> Row:
    """A row for information: another configuration of the API against chalice local."""
    return Row(
        metric,
        round(run["rps"]),
        "req/s",
        round(local["rps"]),
        f"same handlers under chalice local, at {DEFAULT_LOG_LEVEL}",
        harness.ratio(run["rps"], local["rps"]),
        note=f"{note}p99 {run['p99_ms']:.0f} ms, {int(run['errors'])} errors",
    )


def run(mode: Mode) -> Result:
    result = Result(NAME, TITLE)
    size = SIZES[mode.name]
    with harness.temp_database(NAME) as url, harness.scratch(NAME) as tmp:
        (tmp / "exports").mkdir()
        runs = throughput(url, tmp, size)
        mem = memory(url, tmp, size)
        attack = attacks(url, tmp, size)
    api, local, base = runs["api"], runs["chalice_local"], runs["baseline"]
    workers = Settings().api_workers
    turns = f" in {size.rounds} turns" if size.rounds > 1 else ""
    mix = (
        f"{CLIENTS} keep-alive clients, create + status, {size.seconds:g} s{turns}, "
        f"default API_WORKERS ({workers}) and log level ({DEFAULT_LOG_LEVEL})"
    )
    spread = (
        None
        if size.rounds == 1
        else (
            f"turns: API {api['rps_min']:.0f} to {api['rps_max']:.0f}, "
            f"chalice local {local['rps_min']:.0f} to {local['rps_max']:.0f}, "
            f"bare endpoint {base['rps_min']:.0f} to {base['rps_max']:.0f} req/s"
        )
    )
    result.add(
        Row(
            f"requests/s vs chalice local — {mix}",
            round(api["rps"]),
            "req/s",
            round(local["rps"]),
            "same handlers under chalice local",
            harness.ratio(api["rps"], local["rps"]),
            f"≥ {RPS_TARGET:g}x",
            local["requests"] > 0 and api["rps"] >= RPS_TARGET * local["rps"],
            note=spread,
        )
    )
    result.add(
        Row(
            f"requests/s vs bare endpoint — {mix}",
            round(api["rps"]),
            "req/s",
            round(base["rps"]),
            "raw psycopg INSERT/SELECT, same server and workers",
            harness.ratio(api["rps"], base["rps"]),
            f"≥ {BASELINE_TARGET:g}x",
            base["requests"] > 0 and api["rps"] >= BASELINE_TARGET * base["rps"],
        )
    )
    two, quiet = runs["api_2_workers"], runs["api_warning"]
    result.add(_against_local("requests/s with API_WORKERS=2 vs chalice local", two, local, ""))
    bare = f"{harness.ratio(quiet['rps'], base['rps']) or 0:.2f}x the bare endpoint, "
    result.add(
        _against_local("requests/s at log level WARNING vs chalice local", quiet, local, bare)
    )
    booklogr = runs["api_booklogr_tokens"]
    result.add(
        _against_local(
            f"requests/s with BookLogr's tokens (each `jti` looked up among {REVOKED_TOKENS} "
            "revoked) vs chalice local",
            booklogr,
            local,
            f"{harness.ratio(booklogr['rps'], base['rps']) or 0:.2f}x the bare endpoint, ",
        )
    )
    result.add(
        Row(
            "p99 latency",
            round(api["p99_ms"], 1),
            "ms",
            round(local["p99_ms"], 1),
            "chalice local",
            harness.ratio(api["p99_ms"], local["p99_ms"]),
            f"≤ {P99_TARGET_MS:g} ms",
            api["p99_ms"] <= P99_TARGET_MS,
        )
    )
    result.add(
        Row(
            "p50 latency",
            round(api["p50_ms"], 2),
            "ms",
            round(local["p50_ms"], 2),
            "chalice local",
            harness.ratio(api["p50_ms"], local["p50_ms"]),
        )
    )
    result.add(
        Row(
            "errors (non-2xx or broken)",
            api["errors"],
            "requests",
            local["errors"],
            "chalice local",
            target="0",
            met=api["errors"] == 0,
            note=f"of {int(api['requests'])} requests",
        )
    )
    result.add(
        Row(
            f"peak RSS growth, 3 concurrent downloads of a {size.download_mb} MB export",
            round(mem["downloads_growth_mb"], 1),
            "MB",
            round(mem["idle_mb"]),
            "API's peak RSS after one download",
            target=f"< {DOWNLOAD_RSS_TARGET_MB} MB",
            met=mem["downloads_growth_mb"] < DOWNLOAD_RSS_TARGET_MB,
        )
    )
    result.add(
        Row(
            f"peak RSS growth, 4 anonymous {size.body_mb} MB bodies",
            round(mem["bodies_growth_mb"], 1),
            "MB",
            target=f"< {BODY_RSS_TARGET_MB} MB",
            met=mem["bodies_growth_mb"] < BODY_RSS_TARGET_MB,
            note=f"{int(mem['bodies_refused'])} of 4 answered 401",
        )
    )
    result.add(
        Row(
            f"peak RSS growth, {size.anonymous} anonymous 9.9 MB bodies to GET /healthz",
            round(attack["anonymous_growth_mb"], 1),
            "MB",
            target=f"< {ANONYMOUS_RSS_TARGET_MB} MB",
            met=attack["anonymous_growth_mb"] < ANONYMOUS_RSS_TARGET_MB
            and attack["anonymous_closed"] == size.anonymous,
            note=f"{int(attack['anonymous_closed'])} of {size.anonymous} closed unread",
        )
    )
    result.add(
        Row(
            f"peak RSS growth, {size.uploads} parallel {size.upload_mb} MB uploads",
            round(attack["uploads_growth_mb"], 1),
            "MB",
            target=f"≤ {UPLOADS_RSS_TARGET_MB} MB",
            met=attack["uploads_growth_mb"] <= UPLOADS_RSS_TARGET_MB
            and attack["uploads_accepted"] == size.uploads,
            note=f"{int(attack['uploads_accepted'])} of {size.uploads} accepted (202)",
        )
    )
    result.add(
        Row(
            f"GET /healthz p95 from another address, {size.trickles} trickling bodies",
            round(attack["trickle_p95_ms"], 1),
            "ms",
            target=f"< {TRICKLE_P95_TARGET_MS} ms, all closed within {TRICKLE_CLOSED_TARGET_S} s",
            met=attack["trickle_p95_ms"] < TRICKLE_P95_TARGET_MS
            and attack["trickle_longest_s"] <= TRICKLE_CLOSED_TARGET_S
            and attack["trickles_cut"] == size.trickles,
            note=(
                f"{int(attack['trickle_probes'])} probes; {int(attack['trickles_cut'])} of "
                f"{size.trickles} trickles cut (408 or 429), the last after "
                f"{attack['trickle_longest_s']:.1f} s"
            ),
        )
    )
    result.add(
        Row(
            "RSS 10 s after the hostile clients, vs before them",
            round(attack["settled_growth_mb"], 1),
            "MB",
            target=f"≤ {SETTLED_RSS_TARGET_MB} MB",
            met=attack["settled_growth_mb"] <= SETTLED_RSS_TARGET_MB,
        )
    )
    result.details = {
        "runs": runs,
        "memory": mem,
        "attacks": attack,
        "clients": CLIENTS,
        "users": USERS,
        "api_workers": workers,
    }
    result.note = (
        f"{mix} after {size.warmup:g} s of warm-up, the servers taking turns (all running, one "
        "under load at a time, in the same order each turn); memory on fresh API processes "
        f"(peak RSS after a warm-up vs after the case); {os.cpu_count()} CPUs shared by client "
        "and server"
    )
    return result
