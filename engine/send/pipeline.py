"""Send a launched campaign: gate each batch just before dispatch, record, render, deliver.

Exactly once, by construction:
- every recipient gets one delivery row under the unique key (campaign, contact, channel)
  before any transport is called; a row someone else inserted is never sent by us;
- a row is marked `sending` (committed) right before its transport call and `sent` /
  `failed` right after (group commits every few milliseconds). After a crash, `sending`
  rows are *in doubt*: SMS is reconciled against the provider's message list, email is
  re-sent with the same Message-ID (mailbox providers and our capture server collapse
  identical Message-IDs). Nothing else is ever re-sent;
- the resume point is the delivery rows themselves, not a cursor that moves when a batch is
  fetched: a resume walks the audience again and skips every final row, so nobody is
  skipped and nobody is sent twice.

Three cooperating tasks keep the wire busy: the producer (load, gate, record, mark sending,
enqueue), N workers (rate limit, render, transport, retries), the writer (record results).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.check import cap_for, message_for, reason_code
from engine.db import deliveries as ledger
from engine.db.batches import iter_batches
from engine.db.models import Contact
from engine.db.tenants import TenantRecord
from engine.imports.ledger import record_events
from engine.send.content import Content, Job
from engine.send.launch import CampaignRecord
from engine.send.ratelimit import RateLimiter
from engine.timeutil import now_us
from engine.transports.errors import (
    PermanentError,
    SenderRejected,
    TransientError,
    TransportAuthError,
)
from gating import BatchEvaluator, Reason, TenantPolicy, compile_policy
from metrics import Instruments, default_instruments

_contacts = Contact.__table__
RESULT_FLUSH_S = 0.02
RESULT_FLUSH_ROWS = 256
MARK_CHUNK = 64


@dataclass(frozen=True, slots=True)
class SendOptions:
    at_us: int | None = None  # fixed gating clock (tests, replays); None = now, per batch
    batch_size: int = 1000
    concurrency: int = 16
    max_attempts: int = 5
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(slots=True)
class RunSummary:
    decided: dict[tuple[str, str], int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    reconciled: int = 0
    fatal: str | None = None  # why the run stopped early, if it did

    def count(self, decision: str, reason: str, n: int = 1) -> None:
        self.decided[(decision, reason)] = self.decided.get((decision, reason), 0) + n


@dataclass(frozen=True, slots=True)
class _Outcome:
    state: str  # sent | failed | pending (transient, retry later)
    provider_id: str | None = None
    segments: int | None = None
    error: str | None = None
    block_cause: str | None = None


class CampaignRun:
    def __init__(
        self,
        engine: AsyncEngine,
        record: CampaignRecord,
        tenant: TenantRecord,
        content: Content,
        transport,  # noqa: ANN001 - engine.send.content.Transport
        options: SendOptions,
        observer: Callable[[str, int], None] | None = None,
        id_range: tuple[int, int | None] = (0, None),
        instruments: Instruments | None = None,
    ) -> None:
        self.id_range = id_range
        self.metrics = instruments or default_instruments()
        self.engine = engine
        self.record = record
        self.tenant = tenant
        self.content = content
        self.transport = transport
        self.options = options
        self.observer = observer or (lambda _event, _n: None)
        self.definition = record.definition
        self.channel = self.definition.channel
        self.message = message_for(self.definition)
        self.policy = compile_policy(TenantPolicy.from_mapping(tenant.policy), self.message)
        self.evaluator = BatchEvaluator(self.policy, self.message)
        rate = self.definition.model.rate
        self.limiter = RateLimiter(rate.per_second if rate else None, burst=max(1, options.concurrency))
        self.summary = RunSummary()
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=options.concurrency * 4)
        self._results: list[tuple[Job, _Outcome]] = []
        self._results_ready = asyncio.Event()
        self._stopping = False
        # A failure that every message would share (sender refused, bad credentials) stops
        # the run: recipients stay pending for a resume instead of all being marked failed.
        self.fatal: PermanentError | None = None
        # SQLite has one writer at a time; serialising our own writes avoids busy waits.
        self._write_lock = asyncio.Lock()
        self._opt_in = tenant.policy["sms"]["opt_in_required"] and self.channel == "sms"

    async def run(self) -> RunSummary:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        writer = asyncio.create_task(self._writer())
        try:
            await self._produce()
            for _ in workers:
                await self._queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            # The writer is never cancelled: a flush cut in half would lose results (rows
            # left in doubt) and leave a transaction open. It drains and stops by itself.
            self._stopping = True
            self._results_ready.set()
            await writer
        return self.summary

    # -- producer -----------------------------------------------------------------------

    async def _produce(self) -> None:
        clock = self.options.at_us if self.options.at_us is not None else now_us
        cap = cap_for(self.tenant.policy, self.channel)
        async for batch in iter_batches(
            self.engine, self.tenant.id, self.channel, self.definition.model.audience, clock, self.options.batch_size, cap,
            after_id=self.id_range[0], upto_id=self.id_range[1],
        ):
            jobs = await self._gate_and_record(batch)
            for start in range(0, len(jobs), MARK_CHUNK):
                if self.fatal is not None:
                    return
                chunk = jobs[start : start + MARK_CHUNK]
                async with self._write_lock, self.engine.begin() as conn:
                    await ledger.mark_sending(conn, [job.delivery_id for job in chunk], now_us())
                for job in chunk:
                    await self._queue.put(job)

    async def _gate_and_record(self, batch) -> list[Job]:  # noqa: ANN001
        ids = [row[0] for row in batch.contacts]
        async with self.engine.connect() as conn:
            existing = await ledger.existing_for(conn, self.tenant.id, self.record.id, self.channel, ids)
        jobs: list[Job] = []
        todo = []
        in_doubt = []
        for row in batch.contacts:
            known = existing.get(row[0])
            if known is None or known.state in ("pending", "deferred"):
                todo.append(row)
            elif known.state == "sent" and known.purpose == "campaign" and known.address:
                self.evaluator.mark_sent(known.address)
            elif known.state == "sending":
                in_doubt.append((row, known))
                if known.purpose == "campaign" and known.address:
                    self.evaluator.mark_sent(known.address)
        opt_in_sent: set[str] = set()
        first_touched: set[str] = set()
        ever_sent: set[str] = set()
        if self.channel == "sms":
            async with self.engine.connect() as conn:
                addresses = [row[5] for row in todo if row[5]] + [known.address for _row, known in in_doubt if known.address]
                ever_sent = await ledger.addresses_with(conn, self.tenant.id, "sms", addresses, states=("sent",))
                first_touched = ever_sent | await ledger.addresses_with(conn, self.tenant.id, "sms", addresses, states=("sending",))
                if self._opt_in:
                    opt_in_sent = await ledger.addresses_with(
                        conn, self.tenant.id, "sms", addresses, purpose="opt_in_request", states=("sent", "sending", "pending")
                    )
        for row, known in in_doubt:
            # Rebuilt exactly as first sent, so reconciliation matches the same text.
            jobs.append(Job(known.id, row[0], row[1], known.address or "", known.purpose,
                            first_touch=known.address not in ever_sent, in_doubt=True, since_us=known.updated_at_us))
        if not todo:
            return await self._with_names(jobs)
        ledger_rows = batch.ledger
        if len(todo) != len(batch.contacts):
            wanted = {row[0] for row in todo}
            ledger_rows = [event for event in ledger_rows if event[0] in wanted]
        with self.metrics.time_gate_batch(self.channel):
            decisions = self.evaluator.evaluate(todo, ledger_rows, batch.recent_sends, batch.now_us)
        counts: Counter[tuple[str, str | None]] = Counter((d.decision, reason_code(d) or None) for d in decisions)
        self.metrics.record_decisions(self.tenant.code, self.channel, self.message.kind, counts)

        stamp = now_us()
        inserts, updates, sendable = [], [], []
        for row, decision in zip(todo, decisions, strict=True):
            reason = reason_code(decision)
            kind = decision.decision
            purpose = "campaign"
            if kind == "send":
                state = "pending"
            elif kind == "defer":
                state = "deferred"
            elif reason == Reason.AWAITING_SMS_OPT_IN.value and row[5] not in opt_in_sent:
                # The first text to a lead who has not said YES is the opt-in request itself.
                state, purpose = "pending", "opt_in_request"
                opt_in_sent.add(row[5])
            else:
                state = "suppressed"
            self.summary.count(kind, reason)
            values = {
                "decision": kind, "reason": reason or None, "state": state, "purpose": purpose,
                "defer_until_us": decision.until_us if kind == "defer" else None,
                "address": row[5], "updated_at_us": stamp,
            }
            known = existing.get(row[0])
            if known is None:
                inserts.append({
                    "tenant_id": self.tenant.id, "campaign_id": self.record.id, "contact_id": row[0],
                    "channel": self.channel, "kind": self.message.kind, "attempts": 0, "created_at_us": stamp, **values,
                })
            else:
                updates.append({"_id": known.id, **values})
            if state == "pending":
                sendable.append((row, purpose, known.id if known else None))
        async with self._write_lock, self.engine.begin() as conn:
            inserted = await ledger.insert_new(conn, inserts)
            await ledger.update_rows(conn, updates)
        self.observer("decided", len(todo))
        for row, purpose, delivery_id in sendable:
            delivery_id = delivery_id or inserted.get(row[0])
            if delivery_id is None:
                continue  # another worker owns this row
            jobs.append(Job(delivery_id, row[0], row[1], row[5], purpose, first_touch=row[5] not in first_touched))
        return await self._with_names(jobs)

    async def _with_names(self, jobs: list[Job]) -> list[Job]:
        """Names for the templates: one query for the batch's sendable contacts."""
        if not jobs:
            return jobs
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(_contacts.c.id, _contacts.c.first_name, _contacts.c.last_name).where(
                    _contacts.c.id.in_([job.contact_id for job in jobs])
                )
            )
            names = {row[0]: (row[1], row[2]) for row in rows}
        for job in jobs:
            job.first_name, job.last_name = names.get(job.contact_id, (None, None))
        return jobs

    # -- workers ------------------------------------------------------------------------

    async def _worker(self) -> None:
        while (job := await self._queue.get()) is not None:
            outcome = await self._deliver(job)
            self._results.append((job, outcome))
            if len(self._results) >= RESULT_FLUSH_ROWS:
                self._results_ready.set()

    async def _deliver(self, job: Job) -> _Outcome:
        options = self.options
        error: Exception | None = None
        for attempt in range(options.max_attempts):
            if self.fatal is not None:
                return _Outcome("pending", error=f"not attempted: {self.fatal}") if not job.in_doubt else _Outcome("sending")
            try:
                if job.in_doubt and attempt == 0:
                    found = await self.transport.reconcile(self.content, job)
                    if found is not None:
                        self.summary.reconciled += 1
                        return _Outcome("sent", provider_id=found)
                await self.limiter.acquire()
                with self.metrics.time_dispatch(self.channel):
                    provider_id, segments = await self.transport.deliver(self.content, job)
                return _Outcome("sent", provider_id=provider_id, segments=segments)
            except (SenderRejected, TransportAuthError) as exc:
                self.metrics.record_transport_error(self.channel, "permanent")
                self.fatal = exc
                # The transport refused the sender itself: nothing reached the recipient.
                return _Outcome("pending", error=f"{exc.code}: {exc.message}")
            except PermanentError as exc:
                self.metrics.record_transport_error(self.channel, "permanent")
                return _Outcome("failed", error=f"{exc.code}: {exc.message}", block_cause=exc.block_cause)
            except TransientError as exc:
                self.metrics.record_transport_error(self.channel, "transient")
                error = exc
                delay = min(options.retry_max_s, options.retry_base_s * 2**attempt)
                # Full jitter: many workers retrying a recovering relay must not stampede it.
                await asyncio.sleep(random.uniform(0, delay) if attempt + 1 < options.max_attempts else 0)
        return _Outcome("pending", error=f"transient: {error}")

    # -- writer -------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._results_ready.wait(), RESULT_FLUSH_S)
            except TimeoutError:
                pass
            self._results_ready.clear()
            await self._flush()
            if self._stopping and not self._results:
                return

    async def _flush(self) -> None:
        if not self._results:
            return
        results, self._results = self._results, []
        stamp = now_us()
        changes = []
        for job, outcome in results:
            changes.append({
                "_id": job.delivery_id, "state": outcome.state, "provider_id": outcome.provider_id,
                "segments": outcome.segments, "error": outcome.error,
                "sent_at_us": stamp if outcome.state == "sent" else None, "updated_at_us": stamp,
            })
            if outcome.state == "sent":
                self.summary.sent += 1
            elif outcome.state == "failed":
                self.summary.failed += 1
            else:
                self.summary.retry_later += 1
        self.metrics.record_deliveries(
            self.tenant.code, self.channel, Counter(o.state for _job, o in results if o.state in ("sent", "failed"))
        )
        async with self._write_lock, self.engine.begin() as conn:
            await ledger.update_rows(conn, changes)
            blocks = [
                ledger.block_event(job.contact_id, self.channel, job.address, outcome.block_cause, outcome.error or "", stamp)
                for job, outcome in results
                if outcome.block_cause
            ]
            if blocks:
                await record_events(conn, self.tenant.id, blocks, recorded_at_us=stamp)
        self.observer("delivered", len(results))
