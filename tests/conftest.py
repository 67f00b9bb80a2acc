"""Session-wide fixtures: real PostgreSQL and redis-server, and fresh databases per test.

Servers start lazily, the first time a test asks for them, and stop at the end of the
session (or when it fails). A missing server binary fails the test that needs it with a
message naming scripts/ensure-system-deps.sh; it is never a skip, so a CI run cannot go green
without the real servers. Deselect on purpose with ``-m "not postgres and not redis"``: tests
that use these fixtures are marked automatically.

Fixtures:

- ``postgres_server`` (session): the running ``tests.servers.PostgresServer``.
- ``postgres_url`` (session): ``postgresql+asyncpg://postgres@127.0.0.1:PORT/consentry_test``,
  one database shared by the session; not reset between tests.
- ``fresh_postgres_url`` (function): a new empty PostgreSQL database, dropped after the test.
- ``sqlite_url`` (function): ``sqlite+aiosqlite:////…/test.db`` in the test's tmp_path.
- ``db_url`` (function, parametrised ``sqlite`` / ``postgres``): a new empty database.
- ``redis_server`` (session): the running ``tests.servers.RedisServer``.
- ``redis_url`` (function): ``redis://127.0.0.1:PORT/0``, emptied (FLUSHALL) before the test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

from tests.servers import (
    MissingServerBinary,
    PostgresServer,
    RedisServer,
    ServerError,
    find_postgres_bindir,
    find_redis_server,
)

# Shared runners are slow and noisy: no per-example deadline, and a fixed seed so a CI
# failure reproduces from the log (print_blob gives the exact failing example).
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

ServerT = TypeVar("ServerT", PostgresServer, RedisServer)

POSTGRES_FIXTURES = {"postgres_server", "postgres_url", "fresh_postgres_url"}
REDIS_FIXTURES = {"redis_server", "redis_url"}


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for what, find in (("postgres", find_postgres_bindir), ("redis-server", find_redis_server)):
        try:
            lines.append(f"{what}: {find()}")
        except MissingServerBinary:
            lines.append(f"{what}: NOT INSTALLED (run scripts/ensure-system-deps.sh)")
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # db_url's postgres parameter carries the mark itself (see db_url below).
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if names & REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)


@contextlib.contextmanager
def _running(server_type: type[ServerT], base_dir: Path) -> Iterator[ServerT]:
    """Start a server or fail the test with the reason; always stop it afterwards."""
    server: ServerT | None = None
    failure = ""
    try:
        server = server_type(base_dir)
        server.start()
    except ServerError as exc:
        failure = str(exc)
    if failure:  # failed outside the `except` so the report shows no chained traceback
        if server is not None:
            server.stop()
        pytest.fail(failure, pytrace=False)
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with _running(PostgresServer, tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.unique_database_name()
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


# --- SQLite -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


# --- both databases ---------------------------------------------------------------------


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A new, empty database of each kind; the PostgreSQL server starts only if needed."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("fresh_postgres_url")


# --- Redis ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with _running(RedisServer, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    # Every database, not just /0, so a test that picks another index is reset too.
    redis_server.flushall()
    return redis_server.url()
