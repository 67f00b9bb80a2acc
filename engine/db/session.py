"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from engine.config import DEFAULT_URL  # noqa: F401 - re-exported


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# Connections one run uses at once: its producer (gate, record, claim), its result writer and
# its claim renewer. A renewal that waits for a pooled connection delays the claims it keeps.
RUN_CONNECTIONS = 3


def make_engine(url: str, *, idle_in_transaction_s: float | None = None, connections: int = 5) -> AsyncEngine:
    """An engine for `url`.

    `idle_in_transaction_s` (PostgreSQL): the server ends a session that sits inside a
    transaction doing nothing for longer. Senders set it: a runner frozen mid-transaction
    (SIGSTOP, a VM pause) would otherwise hold its row locks for as long as it is frozen,
    and the runner taking over its lapsed claims would wait on them.
    """
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
    connect_args = {}
    if idle_in_transaction_s is not None:
        connect_args["server_settings"] = {"idle_in_transaction_session_timeout": str(int(idle_in_transaction_s * 1000))}
    return create_async_engine(url, pool_size=max(5, connections), max_overflow=5, connect_args=connect_args)


def sending_engine(url: str, claim_ttl_s: float, runs: int = 1) -> AsyncEngine:
    """The engine of a runner: a frozen one's transaction is ended well before its claims
    lapse (a third of the claim ttl, at least a second). `runs`: how many runs share the
    engine at once (an arq worker's concurrent batch jobs)."""
    return make_engine(url, idle_in_transaction_s=max(1.0, claim_ttl_s / 3), connections=RUN_CONNECTIONS * runs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
