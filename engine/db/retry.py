"""Transactions that lost a race are run again.

Several runners write the same deliveries rows (claims, renewals, results). PostgreSQL
resolves a lock cycle by aborting one transaction (deadlock detected, SQLSTATE 40P01), and
SQLite answers "busy" when its single write lock stays taken past the busy timeout. Both
are verdicts on timing, not on the data: the transaction is run again from the start, after
a short random wait. Every statement we retry is conditional (claim from pending, record
where the token still matches), so running one twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
ATTEMPTS = 6

try:  # asyncpg is the PostgreSQL driver; SQLite-only installs may lack it.
    from asyncpg.exceptions import DeadlockDetectedError, SerializationError

    _PG_CONFLICTS: tuple[type[BaseException], ...] = (DeadlockDetectedError, SerializationError)
except ImportError:  # pragma: no cover
    _PG_CONFLICTS = ()

SQLITE_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def lost_a_race(exc: BaseException) -> bool:
    """Is this database error a conflict with another transaction (worth running again)?"""
    if not isinstance(exc, DBAPIError):
        return False
    cause: BaseException | None = exc.orig
    seen = 0
    while cause is not None and seen < 4:
        if _PG_CONFLICTS and isinstance(cause, _PG_CONFLICTS):
            return True
        if isinstance(cause, sqlite3.Error) and getattr(cause, "sqlite_errorcode", None) in SQLITE_BUSY:
            return True
        cause, seen = cause.__cause__, seen + 1
    return False


async def in_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    lock: asyncio.Lock | None = None,
    attempts: int = ATTEMPTS,
    connection: AsyncConnection | None = None,
) -> T:
    """Run `work(conn)` in a transaction, again (up to `attempts`) when it lost a race.

    `connection`: a connection the caller keeps open (a hot path's own); by default one is
    taken from the engine's pool for each attempt.
    """
    for attempt in range(attempts):
        try:
            if connection is not None:
                async with lock or contextlib.nullcontext(), connection.begin():
                    return await work(connection)
            async with lock or contextlib.nullcontext(), engine.begin() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if attempt + 1 >= attempts or not lost_a_race(exc):
                raise
        await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
    raise AssertionError("unreachable")
