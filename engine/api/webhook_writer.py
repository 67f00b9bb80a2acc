"""Group commit for Twilio's webhooks: one transaction for many requests, each answered once
its own write is committed.

While a campaign sends at full rate, Twilio (or the capture server) posts status callbacks
as fast as texts go out, and on SQLite every writer queues for one lock with the sender's
result commits. A transaction per request made callbacks wait seconds in SQLite's busy
handler, and some timed out: for Twilio that is a lost status. Here a request hands its
write over and waits; the writer, a background task of the application, takes everything
that arrived while its last transaction ran (up to MAX_BATCH) and writes it in one
transaction, then answers all of those requests together. There is no timer: a lone
request is written at once, and under load the batches grow by themselves.

What a 2xx means is unchanged: the status or the STOP is committed before the answer goes
out (docs/operations.md, "Twilio webhooks at the send rate"). A crash loses only what was
never answered, and Twilio treats an unanswered webhook as undelivered.

A status for a MessageSid no delivery carries yet (the capture server, or a fast carrier,
can report before the sender's commit of that message lands) is tried again with each later
batch, for up to `status_wait_s`, before it is answered as unknown. If a batch fails as a
whole, each of its writes is run again alone, so one bad request fails only itself.

With `grouped=False` (CONSENTRY_TWILIO_GROUP_COMMIT=off) every request writes in its own
transaction, reading its tenant each time: the old behaviour, kept as the benchmark's
baseline and an escape hatch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.api.inbound_records import InboundText, record_texts
from engine.api.status_updates import Match, StatusReport, apply_statuses
from engine.clock import Clock
from engine.db.models import Tenant
from engine.db.retry import in_transaction
from engine.db.tenants import TenantRecord, load_tenant
from metrics import Instruments

__all__ = ["MAX_BATCH", "WebhookWriter"]

log = logging.getLogger(__name__)
# Webhooks a transaction at most: enough that one commit serves a burst (a campaign sending
# a few thousand texts a second), small enough that a batch holds the SQLite write lock for
# milliseconds, not seconds, so the sender's own commits never wait long behind it.
MAX_BATCH = 500
# How often statuses waiting for their delivery are looked up again when nothing else comes.
_RETRY_S = 0.1
_US = 1_000_000


@dataclass(eq=False, slots=True)
class _Pending:
    item: StatusReport | InboundText
    done: asyncio.Future[TenantRecord | None]
    # For an inbound text: its tenant, once loaded; None if the tenant does not exist.
    tenant: TenantRecord | None = field(default=None)


class WebhookWriter:
    """Writes Twilio's webhooks (see the module doc). `run` is the background task."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, instruments: Instruments, *, grouped: bool = True,
        status_wait_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.instruments = instruments
        self.grouped = grouped
        self.status_wait_us = int(status_wait_s * _US)
        self._queue: list[_Pending] = []
        self._waiting: list[_Pending] = []  # statuses whose delivery was not found yet
        self._ready = asyncio.Event()
        self._running = False
        # Tenants are never deleted and their ids never change: a code seen once maps to
        # its id for the life of the process (a code not found is looked up again).
        self._tenant_ids: dict[str, int] = {}
        # Parsed once per policy version: building a TenantRecord parses the whole policy.
        self._tenants: dict[str, TenantRecord] = {}

    @property
    def waiting(self) -> int:
        """Statuses held until their delivery appears."""
        return len(self._waiting)

    # -- what the handlers call -------------------------------------------------------------

    async def tenant_id(self, code: str) -> int | None:
        """The id of the tenant `code`, or None if there is none."""
        if self.grouped and code in self._tenant_ids:
            return self._tenant_ids[code]
        async with self.engine.connect() as conn:
            found = (await conn.execute(select(Tenant.id).where(Tenant.code == code))).scalar_one_or_none()
        if found is not None:
            self._tenant_ids[code] = found
        return found

    async def status(self, report: StatusReport) -> None:
        """Returns once the status is committed (or known to match no delivery of the tenant)."""
        await self._submit(report)

    async def inbound(self, text: InboundText) -> TenantRecord | None:
        """Returns the text's tenant (None if there is none) once what it asks is committed."""
        return await self._submit(text)

    async def _submit(self, item: StatusReport | InboundText) -> TenantRecord | None:
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        if not (self.grouped and self._running):
            await self._write_alone([pending])
        else:
            self._queue.append(pending)
            self._ready.set()
        return await pending.done

    # -- the background task ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Write batches until `stop` is set, then drain: what was handed over is written,
        and statuses still waiting for their delivery get one last look."""
        self._running = True
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                if not self._queue:
                    waiter = asyncio.create_task(self._ready.wait())
                    await asyncio.wait({waiter, stopping}, timeout=_RETRY_S if self._waiting else None,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                self._ready.clear()
                if stop.is_set():
                    self._running = False  # from now on a late request writes alone
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                # Statuses waiting for their delivery ride along (one indexed query more).
                batch += self._waiting
                self._waiting = []
                if batch:
                    await self._write(batch, final=stop.is_set())
                if stop.is_set() and not self._queue and not self._waiting:
                    return
        finally:
            self._running = False
            stopping.cancel()
            # Cancelled (not stopped): nothing more will be written; no request hangs on it.
            _fail(self._queue + self._waiting, RuntimeError("the webhook writer stopped"))
            self._queue, self._waiting = [], []

    async def _write(self, batch: list[_Pending], *, final: bool = False) -> None:
        try:
            await self._write_batch(batch, final=final)
        except Exception as exc:  # noqa: BLE001 - not swallowed: each request gets its failure
            if len(batch) == 1:
                _fail(batch, exc)
                return
            # One bad write must not fail the others: each alone, in its own transaction.
            log.warning("a batch of %d Twilio webhooks failed; writing each alone", len(batch), exc_info=True)
            for pending in batch:
                await self._write_alone([pending], final=final)

    async def _write_alone(self, batch: list[_Pending], *, final: bool = True) -> None:
        try:
            await self._write_batch(batch, final=final or not self.grouped)
        except Exception as exc:  # noqa: BLE001 - handed to the request, which answers 500
            _fail(batch, exc)

    async def _write_batch(self, batch: list[_Pending], *, final: bool) -> None:
        now = self.clock()
        texts = [pending for pending in batch if isinstance(pending.item, InboundText)]
        statuses = [pending for pending in batch if isinstance(pending.item, StatusReport)]

        async def work(conn: AsyncConnection) -> tuple[list[Match], dict[str, Counter[str]]]:
            tenants = await self._load_tenants(conn, {pending.item.tenant_code for pending in texts})
            for pending in texts:
                pending.tenant = tenants.get(pending.item.tenant_code)
            counts = await record_texts(
                conn, [(p.tenant, p.item) for p in texts if p.tenant is not None], now  # type: ignore[misc]
            )
            matches: list[Match] = []
            if statuses:
                matches, status_counts = await apply_statuses(conn, [p.item for p in statuses], now)  # type: ignore[misc]
                for code, counted in status_counts.items():
                    counts.setdefault(code, Counter()).update(counted)
            return matches, counts

        matches, counts = await in_transaction(self.engine, work)
        for code, counted in counts.items():
            if counted:
                self.instruments.record_ledger_events(code, counted)
        for pending in texts:
            _resolve(pending, pending.tenant)
        for pending, match in zip(statuses, matches, strict=True):
            report = pending.item
            assert isinstance(report, StatusReport)
            if match is Match.UNKNOWN and not final and now - report.received_at_us < self.status_wait_us:
                self._waiting.append(pending)
                continue
            if match is not Match.RECORDED:
                log.warning("status callback for tenant %s: no delivery with MessageSid %s", report.tenant_code,
                            report.sid)
            _resolve(pending, None)

    async def _load_tenants(self, conn: AsyncConnection, codes: set[str]) -> dict[str, TenantRecord]:
        """The tenants among `codes`, each with its current policy (parsed again only when
        its version or name changed)."""
        if not codes:
            return {}
        rows = (await conn.execute(
            select(Tenant.id, Tenant.code, Tenant.name, Tenant.policy_version).where(Tenant.code.in_(sorted(codes)))
        )).all()
        found = {}
        for row in rows:
            cached = self._tenants.get(row.code) if self.grouped else None
            if cached is None or (cached.id, cached.name, cached.policy_version) != (row.id, row.name, row.policy_version):
                cached = self._tenants[row.code] = await load_tenant(conn, row.code, row.policy_version)
            found[row.code] = cached
        return found


def _resolve(pending: _Pending, value: TenantRecord | None) -> None:
    if not pending.done.done():
        pending.done.set_result(value)


def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
    """Hand `exc` to every request of `batch` still waiting (each answers 500)."""
    for pending in batch:
        if not pending.done.done():
            pending.done.set_exception(exc)
