"""Recording what the transports said: one result per delivery, committed as replies arrive.

A worker hands its result to the `ResultWriter` and waits until it is committed before it
takes its next message, so whatever happens to the process, at most one sent-but-unrecorded
message per worker exists (the floor of email, which SMTP cannot close: docs/sending.md).
The writer group-commits: every result that arrived while the last transaction ran goes
into the next one, at once, with no timer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clock import Clock
from engine.db import deliveries as ledger
from engine.db.retry import in_transaction
from engine.db.states import DeliveryState, Purpose, outcome_of
from engine.imports.ledger import record_events
from engine.send.claims import Claimant
from engine.send.content import Job
from engine.webhooks.outbox import enqueue_delivery_failed
from metrics import Instruments

if TYPE_CHECKING:
    from engine.send.pipeline import RunSummary


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one delivery's transport call."""

    state: DeliveryState  # sent | failed | pending (transient or not attempted)
    provider_id: str | None = None
    segments: int | None = None
    error: str | None = None
    block_cause: str | None = None
    # The 5.7.x of a refusal by the relay's policy (engine/send/breaker.py), else None.
    policy_status: str | None = None


# The final outcomes a result can count (metrics), by state and purpose: looked up per result.
_OUTCOMES = {
    (state, purpose): str(outcome_of(state, purpose))
    for state in (DeliveryState.SENT, DeliveryState.FAILED) for purpose in Purpose
}

# How long the first result of a group waits for the others before it is committed, unless
# every message in flight has reported sooner (`in_flight`). Without a wait, replies that
# arrive one loop turn apart were committed one transaction each (a mean group of 5 of 16
# workers, and a third of the commits held one result), and a commit costs two to three
# times a result's own write (bench/bench_send.py). A worker waits this long at most, once per message.
GROUP_WINDOW_S = 0.002

# Not attempted because the claim lapsed: the row is left to whoever holds it now.
WITHDRAWN = Result(DeliveryState.SENDING)


class ResultWriter:
    """Commits the results of one run's workers (see the module doc)."""

    def __init__(
        self, engine: AsyncEngine, claims: Claimant, tenant_id: int, tenant_code: str, channel: str, clock: Clock,
        metrics: Instruments, summary: RunSummary, write_lock: asyncio.Lock, observer: Callable[[str, int], None],
        in_flight: Callable[[], int] | None = None, window_s: float = GROUP_WINDOW_S,
    ) -> None:
        """`in_flight` counts the messages whose results are still to come (the run's
        workers holding one): a result waits up to `window_s` for them. None commits every
        result at once."""
        self.engine = engine
        self.claims = claims
        self.tenant_id = tenant_id
        self.tenant_code = tenant_code
        self.channel = channel
        self.clock = clock
        self.metrics = metrics
        self.summary = summary
        self.write_lock = write_lock
        self.observer = observer
        self._pending: list[tuple[Job, Result, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._in_flight = in_flight
        self._window_s = window_s
        self._window: asyncio.TimerHandle | None = None
        self._stopping = False
        self._conn: AsyncConnection | None = None
        # SQLite: the writer's own sqlite3 connection, on the loop's thread (Claimant.record_on_sqlite).
        self._sqlite: sqlite3.Connection | None = None

    async def open(self) -> None:
        """The writer's own connection for the whole run: a result commit is then one round
        trip to the database, not a pool checkout, a commit and a reset."""
        self._conn = await self.engine.connect()
        self._sqlite = open_direct(self.engine)

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def record(self, job: Job, result: Result) -> None:
        """Hand a result over; returns once it is committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((job, result, done))
        if self._in_flight is None or len(self._pending) >= self._in_flight():
            self._wake()
        elif self._window is None:
            self._window = loop.call_later(self._window_s, self._wake)
        await done

    def _wake(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self._ready.set()

    def stop(self) -> None:
        """Drain what is pending, then end `run` (never cancel it: a flush cut in half would
        lose results and leave a transaction open)."""
        self._stopping = True
        self._wake()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._flush([(job, result) for job, result, _done in batch])
                except BaseException as exc:
                    for _job, _result, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for _job, _result, done in batch:
                    if not done.done():
                        done.set_result(None)
            if self._stopping and not self._pending:
                return

    async def _flush(self, results: list[tuple[Job, Result]]) -> None:
        stamp = self.clock()
        summary = self.summary
        changes: list[dict] = []  # as Claimant.record takes them
        outcomes: dict[str, int] = {}
        for job, result in results:
            state = result.state
            changes.append({
                "_id": job.delivery_id, "state": state, "provider_id": result.provider_id,
                "segments": result.segments, "error": result.error,
                "sent_at_us": stamp if state == DeliveryState.SENT else None, "updated_at_us": stamp,
            })
            if state == DeliveryState.SENT:
                summary.sent += 1
            elif state == DeliveryState.FAILED:
                summary.failed += 1
            else:
                summary.retry_later += 1
                continue
            outcome = _OUTCOMES[state, job.purpose]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self.metrics.record_deliveries(self.tenant_code, self.channel, outcomes)
        # In id order: concurrent writers of overlapping rows then lock them in one order.
        changes.sort(key=lambda change: change["_id"])
        blocks = [
            ledger.block_event(job.contact_id, self.channel, job.address, result.block_cause, result.error or "", stamp)
            for job, result in results
            if result.block_cause
        ]

        failed = [job.delivery_id for job, result in results if result.state == DeliveryState.FAILED]

        async def write(conn: AsyncConnection) -> None:
            await self.claims.record(conn, changes)
            if blocks:
                await record_events(conn, self.tenant_id, blocks, recorded_at_us=stamp)
            if failed:  # `delivery.failed` webhooks, committed with the result
                await enqueue_delivery_failed(conn, self.tenant_id, failed, stamp)

        if not blocks and not failed and self._sqlite is not None:
            async with self.write_lock:
                await self.claims.record_on_sqlite(self._sqlite, changes)
        else:
            await in_transaction(self.engine, write, lock=self.write_lock, connection=self._conn)
        self.observer("delivered", len(results))


def open_direct(engine: AsyncEngine) -> sqlite3.Connection | None:
    """A plain sqlite3 connection to the engine's database file for the result writes, or
    None (PostgreSQL, an in-memory or URI database: the SQLAlchemy path serves those).

    Autocommit mode (transactions are explicit), busy timeout 0 (the event loop's thread
    must never wait on another writer's lock; the caller retries), the pragmas of every
    connection of the engine (engine/db/session.py)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or not url.database or url.database == ":memory:" or url.query:
        return None
    connection = sqlite3.connect(url.database, timeout=0, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
