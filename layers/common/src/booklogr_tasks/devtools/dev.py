"""`booklogr-tasks dev`: the whole service on one machine, in one command, stopped by one Ctrl-C.

Order: database (DATABASE_URL, or an embedded server in ./.booklogr-tasks/pgdata) → migrations →
optional demo library → the API and a listener as child processes → wait. Stopping runs the same
steps backwards: the children get SIGTERM (the listener finishes or releases its jobs), then the
embedded server stops. A second Ctrl-C kills the children at once; the embedded server is still
stopped. The children run in their own sessions, so a terminal's Ctrl-C reaches only this
process and each child gets exactly one signal; on Linux they also get SIGTERM if `dev` itself
is killed, and a PostgreSQL orphaned that way is reused by the next run.

A second run from the same folder, or on a port in use, is refused in one sentence before
anything starts (naming the running copy's pid and address); the banner is printed only once the
health answer comes from this run's API.

Everything it keeps is in ./.booklogr-tasks: the embedded server's data, the generated token
secret and (unless EXPORT_FOLDER is set) the exports, one folder per database, so deleting
that folder starts afresh.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import psycopg

from booklogr_tasks.core.settings import Settings, load_settings
from booklogr_tasks.db.migrate import migrate
from booklogr_tasks.db.pool import check_url, connect, connection_problem, redacted
from booklogr_tasks.devtools import demo as demo_library
from booklogr_tasks.devtools.home import DEV_DATABASE, DEV_HOME, PGDATA, SECRET_FILE, RunLock
from booklogr_tasks.devtools.tokens import mint_token, token_command
from booklogr_tasks.http.serving import port_problem

EXPORTS = "exports"
# Slack on top of the listener's own grace period before a child is killed.
STOP_SLACK_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.25


def run_dev(host: str, port: int | None, demo: bool = False) -> int:
    settings = load_settings()
    check_url(settings.database_url)
    port = port if port is not None else settings.port
    base_url = f"http://{url_host(host)}:{port}"
    # Refusals come before anything is started or printed: one copy per folder, a free port.
    lock = RunLock(DEV_HOME)
    other = lock.acquire(base_url)
    if other is not None:
        tell(
            f"booklogr-tasks is already running from this folder (pid {other.pid}, "
            f"{other.address}); use that one or stop it first, or run another copy from "
            f"another folder on another port with `make run PORT={port + 1}`"
        )
        return 1
    try:
        problem = port_problem(host, port)
        if problem is not None:
            tell(port_taken(host, port, problem))
            return 1
        return _run(host, port, base_url, demo)
    finally:
        lock.release()


def _run(host: str, port: int, base_url: str, demo: bool) -> int:
    stop = StopRequest()
    stop.install()
    env = dict(os.environ)
    with ExitStack() as stack:
        if env.get("DATABASE_URL"):
            say(f"database:  {redacted(env['DATABASE_URL'])} (from DATABASE_URL)")
        else:
            from booklogr_tasks.devtools.embedded import embedded_server

            data_dir = DEV_HOME / PGDATA
            say(f"starting the embedded PostgreSQL in {data_dir} ...")
            server_url = stack.enter_context(embedded_server(data_dir))
            env["DATABASE_URL"] = ensure_database(server_url, DEV_DATABASE)
            say(f"database:  {env['DATABASE_URL']} (embedded; data kept in {data_dir})")
        secret_note = ensure_auth(env, DEV_HOME)
        settings = load_settings(env)
        try:
            applied = migrate(settings.database_url)
            if not env.get("EXPORT_FOLDER"):
                env["EXPORT_FOLDER"] = str(dev_export_folder(DEV_HOME, settings.database_url))
                settings = load_settings(env)
        except psycopg.OperationalError as exc:
            tell(
                f"cannot use the database {redacted(settings.database_url)}: "
                f"{connection_problem(exc)}; set DATABASE_URL to one that answers, or unset "
                "it to use the embedded one"
            )
            return 2
        say("migrations: " + (", ".join(applied) if applied else "schema is up to date"))
        demo_state = None
        if demo:
            demo_state = demo_library.seed_demo_library(settings.database_url)
            say(
                f"demo: added {demo_state.added} books for user {demo_library.DEMO_USER_ID}"
                if demo_state.added
                else f"demo: user {demo_library.DEMO_USER_ID} already has books "
                f"({demo_state.books}); left as they are"
            )
        if stop.requested.is_set():
            return 0

        children = stack.enter_context(child_processes(settings.shutdown_grace_seconds))
        stop.on_force = children.kill
        env["PYTHONUNBUFFERED"] = "1"
        children.start("api", ["api", "--host", host, "--port", str(port)], env)
        children.start("listener", ["listen"], env)

        if not wait_healthy(base_url, children, stop):
            return exit_code(children, stop)
        if not serves_port(children.procs["api"].pid, port):
            tell(f"another program answers on port {port}; pick another with `make run PORT=...`")
            return 1
        say(banner(base_url, settings, secret_note, demo_state))
        while not stop.requested.wait(POLL_SECONDS):
            if children.exited():
                break
        say("booklogr-tasks dev: stopping")
        return exit_code(children, stop)
    return 0


def say(text: str) -> None:
    print(text, flush=True)


def tell(sentence: str) -> None:
    """A refusal or an error: one sentence on stderr."""
    print(f"booklogr-tasks dev: {sentence}", file=sys.stderr, flush=True)


# --- who holds the port --------------------------------------------------------------------


def _listening_pids(port: int) -> set[int]:
    """Processes listening on `port`, as far as this user may see (psutil, when installed)."""
    try:
        import psutil

        return {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
    except (ImportError, OSError, RuntimeError):
        return set()


def port_taken(host: str, port: int, problem: str) -> str:
    """The refusal for a port in use: another booklogr-tasks (its pid and folder) or a program."""
    import psutil

    advice = f"pick another port with `make run PORT={port + 1}`"
    for pid in sorted(_listening_pids(port)):
        try:
            proc = psutil.Process(pid)
            cmdline, folder = " ".join(proc.cmdline()), proc.cwd()
        except psutil.Error:
            continue
        if "booklogr_tasks" in cmdline or "booklogr-tasks" in cmdline:
            return (
                f"booklogr-tasks is already running on http://{url_host(host)}:{port} "
                f"(pid {pid}, from {folder}); {advice}"
            )
        return f"{problem} (pid {pid}: {cmdline[:80]}); {advice}"
    return f"{problem}; {advice}"


def serves_port(pid: int, port: int) -> bool:
    """Whether the process `pid` (or one it started) listens on `port`; True when nothing can
    tell (without psutil the free port checked before the start stands for it)."""
    pids = _listening_pids(port)
    if not pids:
        return True
    try:
        import psutil

        tree = {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
    except (ImportError, OSError):
        return True
    return bool(tree & pids)


# --- database ------------------------------------------------------------------------------


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if missing; return its URL."""
    with connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def dev_export_folder(home: Path, database_url: str) -> Path:
    """Where `dev` keeps exports: in the data folder, one folder per database.

    Deleting the data folder deletes the exports with the database they belong to, and a
    database created afresh (or another DATABASE_URL) never writes over files of another one,
    though its ids start from 1 again.
    """
    return (home / EXPORTS / database_identity(database_url)).resolve()


def database_identity(database_url: str) -> str:
    """Names this database among all others: its server's system identifier (set once, at
    initdb) and the database's oid (new for every CREATE DATABASE)."""
    with connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT d.oid AS db,
                      CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                           THEN (SELECT system_identifier FROM pg_control_system()) END AS system
                 FROM pg_database d WHERE d.datname = current_database()"""
        ).fetchone()
    assert row is not None
    if row["system"] is None:
        # Without the privilege: the server's address stands in for the cluster.
        server = hashlib.sha256(redacted(database_url).encode()).hexdigest()[:16]
        return f"{server}-{row['db']}"
    return f"{int(row['system']):x}-{row['db']}"


# --- auth ----------------------------------------------------------------------------------


def ensure_auth(env: dict[str, str], home: Path) -> str:
    """Give the API a way to authenticate; return a sentence saying which.

    The API refuses to start with neither a secret nor single-user mode, so without either
    `dev` makes a local secret once and keeps it, and tokens minted with it stay valid.
    """
    settings = load_settings(env)
    if settings.single_user_mode:
        return "tokens:    none needed (single-user mode: every request is user 1)"
    if settings.auth_secret_key:
        return (
            "tokens:    HS256 with AUTH_SECRET_KEY, user id in claim `id`; with that variable "
            f"set, a token for user 1:\n  TOKEN=$({token_command(None, 1)})"
        )
    secret_path = (home / SECRET_FILE).resolve()
    if not secret_path.exists():
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    env["AUTH_SECRET_KEY"] = secret_path.read_text().strip()
    return (
        f"tokens:    HS256 with the local secret in {secret_path}; a token for user 1, "
        f"from any folder:\n  TOKEN=$({token_command(secret_path, 1)})"
    )


# --- child processes -----------------------------------------------------------------------


class StopRequest:
    """SIGINT/SIGTERM once: stop in order. Twice: kill the children now."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.count = 0
        self.on_force: Callable[[], None] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.requested.set()
        if self.count > 1 and self.on_force is not None:
            self.on_force()


class Children:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "booklogr_tasks.cli", "--quiet", *args],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )

    def exited(self) -> dict[str, int]:
        """The children that have ended, with their exit codes."""
        return {
            name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None
        }

    def signal_all(self, signum: int) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                # The whole session: a child's own helpers go too.
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signum)

    def kill(self) -> None:
        self.signal_all(signal.SIGKILL)

    def stop(self) -> None:
        self.signal_all(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(self.grace_seconds + STOP_SLACK_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
                proc.wait()
        # Whatever a child left in its session (a server it started) goes with it.
        for proc in self.procs.values():
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def child_processes(grace_seconds: float) -> Iterator[Children]:
    children = Children(grace_seconds)
    try:
        yield children
    finally:
        children.stop()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when `dev` dies, even by SIGKILL (Linux only)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # dev died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


# --- waiting -------------------------------------------------------------------------------


def url_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(base_url: str, children: Children, stop: StopRequest) -> bool:
    """Wait for /healthz 200 for as long as both children run and no stop is asked."""
    while not stop.requested.is_set():
        if children.exited():
            return False
        if healthy(base_url):
            return True
        stop.requested.wait(POLL_SECONDS)
    return False


def exit_code(children: Children, stop: StopRequest) -> int:
    """0 after a requested stop; 1 when a child ended on its own."""
    ended = children.exited()
    for name, code in ended.items():
        say(f"booklogr-tasks dev: the {name} exited with code {code}; stopping")
    return 1 if ended else 0


def banner(
    base_url: str, settings: Settings, secret_note: str, demo: demo_library.DemoState | None
) -> str:
    exports = (
        f"s3://{settings.export_bucket}"
        if settings.export_bucket
        else str(settings.export_folder.resolve())
    )
    lines = [
        "",
        f"booklogr-tasks is running: {base_url} (health: {base_url}/healthz)",
        f"exports:   {exports}",
        secret_note,
    ]
    if demo is not None:
        token = (
            None
            if settings.single_user_mode
            else mint_token(settings.auth_secret_key or "", demo_library.DEMO_USER_ID)
        )
        lines += [
            "",
            f"Try it (user {demo_library.DEMO_USER_ID}; paste into a shell):",
            demo_library.curl_walkthrough(base_url, token, demo),
        ]
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)
