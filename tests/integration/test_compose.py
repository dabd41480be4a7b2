"""docker-compose.yml, run without Docker: each service's command as a plain process.

The services get the environment compose would give them (env_file, then `environment` with
`${VAR:-default}` filled in), with DATABASE_URL pointed at the test database and the `exports`
volume mapped to a temporary folder. If the compose file and the code drift apart — a renamed
command, an option that no longer exists, a variable the code does not read — this fails.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.helpers import seed_books, service
from tests.integration.http_calls import CSV_HEADER, export_csv, free_port, token_for, wait_healthy

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
APP_SERVICES = ("migrate", "api", "listener")
# What `AUTH_SECRET_KEY=... docker compose up` would see in the shell.
SHELL = {"AUTH_SECRET_KEY": "compose-test-secret-of-sufficient-length-0123456789"}

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's variable syntax: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?}."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = shell.get(name)
        unset = current is None if op in ("-", "?") else not current
        if op is not None and unset:
            if op.endswith("?"):
                raise AssertionError(f"compose needs {name}: {arg}")
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value
    return values


def service_environment(spec: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    files = spec.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        env |= read_env_file(REPO / name)
    environment = spec.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env |= {key: interpolate(str(value), SHELL) for key, value in environment.items()}
    return env


def named_mounts(spec: dict[str, Any], volumes: Mapping[str, Any]) -> dict[str, str]:
    """volume name → path in the container, for the named volumes a service mounts."""
    mounts = {}
    for entry in spec.get("volumes", []):
        source, _, target = str(entry).partition(":")
        if source in volumes:
            mounts[source] = target.split(":")[0]
    return mounts


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# --- the file's shape ------------------------------------------------------------------------


def test_services_wait_for_a_healthy_database_and_a_finished_migration() -> None:
    services = compose()["services"]
    assert set(services) >= {"postgres", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "listener"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
    for name in APP_SERVICES:
        assert services[name]["command"][0] == "booklogr-tasks"
    assert services["migrate"]["command"][1:3] == ["migrate", "--wait"]
    assert services["api"]["command"][1:3] == ["api", "--host"]
    assert option(services["api"]["command"], "--host") == "0.0.0.0"
    assert services["listener"]["command"][1] == "listen"


# --- safe by default -----------------------------------------------------------------------------


def published_ports(shell: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The api's published ports as (host address, host port, container port)."""
    found = []
    for entry in compose()["services"]["api"]["ports"]:
        parts = interpolate(str(entry), shell).split(":")
        assert len(parts) == 3, f"{entry!r} publishes on every interface: name the address"
        found.append((parts[0], parts[1], parts[2]))
    return found


def test_the_api_is_published_on_this_machine_only_unless_the_operator_opts_in() -> None:
    assert published_ports({}) == [("127.0.0.1", "8000", "8000")]
    assert published_ports({"PORT": "9000"}) == [("127.0.0.1", "9000", "8000")]
    assert published_ports({"BIND": "0.0.0.0"}) == [("0.0.0.0", "8000", "8000")]
    for name, spec in compose()["services"].items():
        if name != "api":
            assert "ports" not in spec, f"{name} publishes a port"


def test_healthchecks_test_the_real_servers_over_tcp() -> None:
    services = compose()["services"]
    check = services["postgres"]["healthcheck"]["test"]
    command = check[1:] if check[0] == "CMD" else interpolate(check[1], {}).split()
    assert command[0] == "pg_isready"
    # Over TCP to the server's own port: the first-boot server listens on a Unix socket only.
    assert option(command, "-h") == "127.0.0.1" and option(command, "-p") == "5432"
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    container_port = published_ports({})[0][2]
    assert f"http://127.0.0.1:{container_port}/healthz" in api_check


def test_migrate_waits_for_the_database_and_is_retried() -> None:
    migrate = compose()["services"]["migrate"]
    assert float(option(migrate["command"], "--wait")) >= 30
    assert str(migrate["restart"]).startswith("on-failure")


def test_secrets_go_only_where_they_are_used() -> None:
    services = compose()["services"]
    assert service_environment(services["api"])["AUTH_SECRET_KEY"] == SHELL["AUTH_SECRET_KEY"]
    for name in ("migrate", "listener"):
        env = service_environment(services[name])
        assert "AUTH_SECRET_KEY" not in env and "SINGLE_USER_MODE" not in env, name
    assert "AUTH_SECRET_KEY" not in read_env_file(REPO / "local/booklogr-tasks.env")


def test_a_dot_env_file_beside_the_compose_file_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to ask git check-ignore")
    checked = subprocess.run(
        ["git", "check-ignore", "--quiet", ".env"], cwd=REPO, check=False, timeout=30
    )
    assert checked.returncode == 0, ".env (where the README puts AUTH_SECRET_KEY) is not ignored"


def test_listener_can_be_scaled() -> None:
    listener = compose()["services"]["listener"]
    # Each of these names one container, so `--scale listener=3` would be refused.
    for fixed in ("container_name", "ports", "hostname"):
        assert fixed not in listener
    # Replicas tell their tasks apart by worker id; a shared nickname would still be unique
    # per process, but a fixed one makes the queue report useless.
    assert "WORKER_NICKNAME" not in service_environment(listener)


def test_one_named_volume_is_the_export_folder_of_api_and_listener() -> None:
    spec = compose()
    volumes = spec["volumes"]
    for name in ("api", "listener"):
        service_spec = spec["services"][name]
        mounts = named_mounts(service_spec, volumes)
        assert "exports" in mounts, f"{name} does not mount the exports volume"
        assert service_environment(service_spec)["EXPORT_FOLDER"] == mounts["exports"]


def test_the_image_is_built_from_this_repository_and_runs_as_a_user() -> None:
    images = set()
    for name in APP_SERVICES:
        spec = compose()["services"][name]
        images.add(spec["image"])
        dockerfile = REPO / spec["build"]["context"] / spec["build"]["dockerfile"]
        text = dockerfile.read_text()
        users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
        assert users and users[-1] not in ("root", "0"), "the image must not run as root"
        for source in re.findall(r"^COPY\s+(.+)\s+\S+$", text, re.MULTILINE):
            for path in source.split():
                assert (REPO / spec["build"]["context"] / path).exists(), path
    assert len(images) == 1, "migrate, api and listener should share one image"


# --- the services, run as processes ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_compose_services_as_processes_export_a_csv(empty_db_url: str, tmp_path: Path) -> None:
    spec = compose()
    exports = tmp_path / "exports-volume"
    exports.mkdir()
    port = free_port()
    base_env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}

    def env_of(name: str) -> dict[str, str]:
        service_spec = spec["services"][name]
        env = base_env | service_environment(service_spec)
        env["DATABASE_URL"] = empty_db_url
        if "exports" in named_mounts(service_spec, spec["volumes"]):
            env["EXPORT_FOLDER"] = str(exports)
        return env

    def args_of(name: str) -> list[str]:
        args: list[str] = list(spec["services"][name]["command"][1:])
        if name == "api":
            published = spec["services"]["api"]["ports"][0]
            assert str(published).rsplit(":", 1)[1] == option(args, "--port")
            args[args.index("--port") + 1] = str(port)
        return args

    # The image's working directory holds functions/, as the repository does.
    with service(args_of("migrate"), env_of("migrate"), tmp_path / "migrate.log", REPO) as m:
        assert m.proc.wait(60) == 0, m.log()

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        books = seed_books(conn, owner_id=42)

    with (
        service(args_of("api"), env_of("api"), tmp_path / "api.log", REPO) as api,
        service(args_of("listener"), env_of("listener"), tmp_path / "l1.log", REPO) as one,
        service(args_of("listener"), env_of("listener"), tmp_path / "l2.log", REPO) as two,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, api, one, two)
        # The api's healthcheck, as the container would run it, against the real server.
        check = spec["services"]["api"]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        probe = check[3].replace("127.0.0.1:8000/", f"127.0.0.1:{port}/")
        assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0
        text = export_csv(base, token_for(SHELL["AUTH_SECRET_KEY"], 42))
        rows = list(csv.reader(io.StringIO(text)))
        assert ",".join(rows[0][:9]) == CSV_HEADER
        assert len(rows) == 1 + len(books)
        # The listener wrote the file into the shared volume; the API served it from there.
        files = [p for p in exports.rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in files] == [text.encode("utf-8")]
        # `docker compose stop` sends SIGTERM: every service ends cleanly.
        for proc in (api, one, two):
            proc.proc.send_signal(signal.SIGTERM)
        for proc in (api, one, two):
            assert proc.proc.wait(60) == 0, proc.log()
