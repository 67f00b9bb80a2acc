"""The server fixtures give real, isolated servers (tests/conftest.py, tests/servers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.servers import PostgresServer, RedisServer


def _dsn(sqlalchemy_url: str) -> str:
    # asyncpg takes a libpq URL, without SQLAlchemy's "+asyncpg" driver suffix.
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_postgres_url_is_a_real_postgresql_server(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert postgres_url.endswith("/consentry_test")
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        version = await connection.fetchval("SELECT version()")
        database = await connection.fetchval("SELECT current_database()")
        fsync = await connection.fetchval("SHOW fsync")
        listen = await connection.fetchval("SHOW listen_addresses")
    finally:
        await connection.close()
    assert version.startswith("PostgreSQL ")
    assert database == "consentry_test"
    assert fsync == "off"
    assert listen == "127.0.0.1"


async def test_redis_url_is_a_real_redis_server(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping() is True
        await client.set("consentry:test", "value")
        assert await client.get("consentry:test") == b"value"
        assert (await client.config_get("save"))["save"] == ""
        assert (await client.config_get("appendonly"))["appendonly"] == "no"
    finally:
        await client.aclose()


async def test_redis_url_starts_each_test_empty(redis_url: str) -> None:
    # Runs after the test above wrote a key: the per-test FLUSHALL removed it.
    client = aioredis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


def test_sqlite_url_points_into_the_test_tmp_path(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite+aiosqlite:///{tmp_path}/test.db"


async def test_db_url_is_a_fresh_empty_database(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        assert not Path(db_url.split(":///", 1)[1]).exists()
        return
    connection = await asyncpg.connect(_dsn(db_url))
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    assert tables == 0


async def test_fresh_postgres_databases_are_isolated(
    postgres_server: PostgresServer, fresh_postgres_url: str
) -> None:
    other_name = postgres_server.unique_database_name()
    other_url = postgres_server.create_database(other_name)
    try:
        assert other_url != fresh_postgres_url
        first = await asyncpg.connect(_dsn(fresh_postgres_url))
        second = await asyncpg.connect(_dsn(other_url))
        try:
            await first.execute("CREATE TABLE marker (value text)")
            await first.execute("INSERT INTO marker VALUES ('first')")
            missing = await second.fetchval("SELECT to_regclass('public.marker')")
        finally:
            await first.close()
            await second.close()
        assert missing is None
    finally:
        postgres_server.drop_database(other_name)


def test_dropping_a_database_disconnects_leaked_connections(
    postgres_server: PostgresServer,
) -> None:
    # A test that forgets to dispose its engine must not make the fixture's DROP fail.
    name = postgres_server.unique_database_name()
    url = postgres_server.create_database(name)
    leaked = subprocess.Popen(
        [sys.executable, "-c", _HOLD_CONNECTION, _dsn(url)],
        stdout=subprocess.PIPE,
    )
    try:
        assert leaked.stdout is not None and leaked.stdout.readline() == b"connected\n"
        postgres_server.drop_database(name)
    finally:
        leaked.kill()
        leaked.wait()


_HOLD_CONNECTION = """
import asyncio, sys, asyncpg
async def main():
    connection = await asyncpg.connect(sys.argv[1])
    print("connected", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.mark.postgres
@pytest.mark.redis
def test_servers_stop_with_their_whole_process_group(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server:
        postmaster = server._proc
        assert postmaster is not None
        group = postmaster.pid
        assert os.getpgid(postmaster.pid) == group
        cluster = server.data_dir.resolve().parent
    assert postmaster.poll() is not None
    assert not cluster.exists()  # as root it lives outside tmp_path, and must not leak
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)

    with RedisServer(tmp_path / "redis") as redis_server:
        process = redis_server._proc
        assert process is not None
    assert process.poll() is not None


@pytest.mark.redis
def test_command_line_prints_a_url_and_serves_until_terminated(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    cli = subprocess.Popen(
        [sys.executable, "-m", "tests.servers", "redis"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert cli.stdout is not None
        url = cli.stdout.readline().decode().strip()
        assert url.startswith("redis://127.0.0.1:")
        import redis

        client = redis.Redis.from_url(url)
        assert client.ping() is True
        client.close()
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=10) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


_NEEDS_REDIS = """
def test_uses_redis(redis_url):
    pass
"""


def test_a_missing_server_fails_the_run_and_names_the_install_script(tmp_path: Path) -> None:
    # Run a one-test session whose redis-server "is not installed": it must fail, not skip.
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "test_needs_redis.py").write_text(_NEEDS_REDIS)
    env = {**os.environ, "CONSENTRY_TEST_REDIS_SERVER": str(tmp_path / "no-redis-server")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(root / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "tests.conftest",  # the fixtures under test, loaded as a plugin
            str(tmp_path / "test_needs_redis.py"),
        ],  # fmt: skip
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout, result.stdout
    assert "redis-server not found" in result.stdout, result.stdout
    assert "scripts/ensure-system-deps.sh" in result.stdout
