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
    from asyncpg.exceptions import DeadlockDetectedError, InterfaceError, SerializationError

    _PG_CONFLICTS: tuple[type[BaseException], ...] = (DeadlockDetectedError, SerializationError)
    # "connection is closed": the server ended it (a restart, a terminated backend).
    _PG_CLOSED: tuple[type[BaseException], ...] = (InterfaceError,)
except ImportError:  # pragma: no cover
    _PG_CONFLICTS = _PG_CLOSED = ()

SQLITE_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# PostgreSQL's answers when there is no database to talk to (SQLSTATE): a connection
# exception (08), the server shutting down or starting up (57P01-57P03), no connection slot
# left (53300). 55000 is how "database … is not currently accepting connections" comes.
_PG_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


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


def database_unreachable(exc: BaseException) -> bool:
    """Is this error the database being out of reach (down, restarting, the network, no
    connections allowed), as opposed to a statement it refused? A runner stops on it and
    leaves the rest for `campaign resume`; nothing about the data is wrong."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 6:
        if isinstance(cause, OSError):  # refused, reset, timed out, no route
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and (state.startswith(_PG_UNREACHABLE_STATES)
                                       or (state == "55000" and "accepting connections" in str(cause))):
            return True
        if _PG_CLOSED and isinstance(cause, _PG_CLOSED) and "closed" in str(cause):
            return True
        nested = cause.orig if isinstance(cause, DBAPIError) else None
        cause, seen = nested or cause.__cause__ or cause.__context__, seen + 1
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
