"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from engine.config import DEFAULT_URL  # noqa: F401 - re-exported


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            # WAL lets `campaign status` read while a send writes; NORMAL is durable
            # across process crashes (kill -9), which is what exactly-once needs.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # 8 MB of page cache a connection: reads are sequential (keyset pages), the OS
            # caches the file, and a bigger cache only makes RSS grow with the database.
            cursor.execute("PRAGMA cache_size=-8192")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
