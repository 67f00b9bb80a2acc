"""Send a launched campaign: gate each batch just before dispatch, record, claim, deliver.

Exactly once, by construction (docs/sending.md):
- every recipient gets one delivery row under the unique key (campaign, contact, channel)
  before any transport is called; a row another runner inserted is not ours to decide;
- a row is handed to a transport only by the runner that *claimed* it: a conditional
  `pending → sending` carrying this runner's fencing token (engine/send/claims.py). Any
  number of runners (a second `send`, a `resume` from cron, arq workers) may walk the same
  campaign; the database lets one of them win each row;
- the claim is checked again before every transport call (and before DATA): a runner that
  was frozen past its claims, or cut off from the database, stops instead of sending;
- each result is recorded as its reply arrives, and a worker takes its next message only
  once its last result is committed: a kill -9 leaves at most `concurrency` messages in
  doubt. A row left `sending` under a lapsed claim is reclaimed by the next runner: SMS is
  reconciled against the provider's message list, email resent with its original
  Message-ID (SMTP has no idempotency key: that resend is the floor no design removes);
- the resume point is the delivery rows themselves: a resume walks the audience again and
  skips every final row, so nobody is skipped and nobody is sent twice.

Three cooperating tasks keep the wire busy: the producer (load, gate, record, claim,
enqueue), N workers (rate limit, render, transport, retries), the writer (group-commits
results as they arrive).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clock import Clock
from engine.db import deliveries as ledger
from engine.db.batches import Batch, iter_batches
from engine.db.models import Contact
from engine.db.retry import database_unreachable, in_transaction
from engine.db.states import DeliveryState, Kind, Purpose
from engine.db.tenants import TenantRecord
from engine.send.batch_log import BatchLog
from engine.send.breaker import PolicyBreaker
from engine.send.campaign_inputs import cap_for, message_for, reason_code
from engine.send.claims import Claimant
from engine.send.content import Content, Job
from engine.send.errors import DatabaseUnreachable, RateLimitUnavailable
from engine.send.launch import CampaignRecord
from engine.send.ratelimit import Pacer, RateLimiter
from engine.send.results import WITHDRAWN, Result, ResultWriter
from engine.transports.errors import (
    DispatchCancelled,
    PermanentError,
    StopCause,
    TransientError,
    TransportTimeoutError,
)
from gating import (
    BatchEvaluator,
    Decision,
    DecisionKind,
    Defer,
    Reason,
    compile_policy,
)
from metrics import Instruments, default_instruments

log = logging.getLogger(__name__)

_contacts = Contact.__table__
# Rows claimed per statement. Unpaced, 256: a quarter of the claim statements of 64, and a
# runner is through 256 rows in a fraction of a second. Paced (`rate.per_second`), 64 as
# ever: rows claimed wait for the pace, and rows one runner holds are rows the other runners
# on the campaign (arq workers, a second send, a resume) cannot share.
CLAIM_CHUNK = 256
PACED_CLAIM_CHUNK = 64
DEFAULT_CLAIM_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class SendOptions:
    batch_size: int = 1000
    concurrency: int = 16
    max_attempts: int = 5
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    # How long a claim holds without renewal: a runner that dies or freezes leaves its rows
    # in doubt for at most this long before another runner reclaims them.
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    # Recipients in a row refused with the same 5.7.x before the run stops (0: never).
    policy_stop_after: int = 5


@dataclass(slots=True)
class RunSummary:
    """What this run did (the campaign's totals come from the ledger: runner.settle)."""

    decided: dict[tuple[str, str], int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    reconciled: int = 0
    fatal: str | None = None  # why the run stopped early, if it did, in plain words
    stop_cause: StopCause | None = None  # and what kind of fault that was
    lost_claims: bool = False  # stopped because its claims lapsed (frozen, database gone)
    halted: str | None = None  # stopped because the campaign was paused or cancelled


    def count(self, decision: str, reason: str, n: int = 1) -> None:
        self.decided[(decision, reason)] = self.decided.get((decision, reason), 0) + n

    def add(self, other: RunSummary) -> None:
        """Fold a later pass of the same run into this one."""
        for (decision, reason), n in other.decided.items():
            self.count(decision, reason, n)
        self.sent += other.sent
        self.failed += other.failed
        self.retry_later = other.retry_later  # what the last pass left behind
        self.reconciled += other.reconciled
        self.fatal = self.fatal or other.fatal
        self.stop_cause = self.stop_cause or other.stop_cause
        self.lost_claims = self.lost_claims or other.lost_claims
        self.halted = self.halted or other.halted


class CampaignRun:
    def __init__(
        self,
        engine: AsyncEngine,
        record: CampaignRecord,
        tenant: TenantRecord,
        content: Content,
        transport,  # noqa: ANN001 - engine.send.content.EmailChannel | SmsChannel
        options: SendOptions,
        clock: Clock,
        observer: Callable[[str, int], None] | None = None,
        id_range: tuple[int, int | None] = (0, None),
        instruments: Instruments | None = None,
        lease_clock: Clock | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.id_range = id_range
        self.metrics = instruments or default_instruments()
        self.engine = engine
        self.record = record
        self.tenant = tenant
        self.content = content
        self.transport = transport
        self.options = options
        self.clock = clock
        self.observer = observer or (lambda _event, _n: None)
        self.definition = record.definition
        self.channel = self.definition.channel
        self.message = message_for(self.definition)
        self.policy = compile_policy(tenant.policy, self.message)
        self.evaluator = BatchEvaluator(self.policy, self.message)
        # The opt-in request, gated as gating models it: an individual text that rule 4 lets
        # through, held by blocks and, being automated, by quiet hours (gating/rules.py).
        self.opt_in_evaluator = BatchEvaluator(
            self.policy, replace(self.message, kind=Kind.INDIVIDUAL.value, is_opt_in_request=True)
        )
        self.cap = cap_for(tenant.policy, self.channel)
        self.claims = Claimant(engine, clock, record.id, options.claim_ttl_s, self.cap, lease_clock)
        rate = self.definition.model.rate
        # The arq backend passes the sender's limit shared through Redis; inline, this process is the only sender.
        self.limiter = pacer or RateLimiter(rate.per_second if rate else None, burst=max(1, options.concurrency))
        self.claim_chunk = PACED_CLAIM_CHUNK if (rate and rate.per_second) or pacer is not None else CLAIM_CHUNK
        self.summary = RunSummary()
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=options.concurrency * 4)
        self._withdrawn: list[int] = []  # claimed, never dispatched: handed back at the end
        # A failure that every message would share (an untrusted certificate, a refused
        # sender or credentials, a relay refusing recipients by policy) stops the run:
        # recipients stay pending for a resume instead of all being marked failed.
        self.fatal: PermanentError | None = None
        self.breaker = PolicyBreaker(options.policy_stop_after)
        # What stopped the run from recording (the database out of reach): nothing more is
        # sent, and run() raises it once every worker has stopped.
        self.broken: BaseException | None = None
        # SQLite has one writer at a time; serialising our own writes avoids busy waits.
        self._write_lock = asyncio.Lock()
        self.results = ResultWriter(
            engine, self.claims, tenant.id, tenant.code, self.channel, clock, self.metrics, self.summary,
            self._write_lock, self.observer, in_flight=lambda: self._holding,
        )
        self._holding = 0  # workers holding a message whose result is not yet recorded
        self._opt_in = tenant.policy.sms.opt_in_required and self.channel == "sms"
        self.batch_log = BatchLog(record.code, tenant.code, self.channel)
        self._bulk = self.message.kind == Kind.BULK

    async def run(self) -> RunSummary:
        await self.claims.start()
        await self.results.open()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        writer = asyncio.create_task(self.results.run())
        try:
            try:
                await self._produce()
            except Exception as exc:
                if not database_unreachable(exc):
                    raise
                self.broken = self.broken or exc
            for _ in workers:
                await self._queue.put(None)
            await asyncio.gather(*workers)
            # Refusals still held when the queue ran dry: a row too short to stop for. (With
            # the database out of reach they stay claimed, for `resume` to settle.)
            if self.broken is None:
                await self._record(self.breaker.drain())
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.results.stop()
            await writer
            await self.results.close()
            await self.claims.stop()
            await self.claims.release(self._withdrawn)
            self.batch_log.flush()
        self.summary.lost_claims = self.claims.lost
        self.summary.halted = self.claims.halted
        if self.broken is not None:
            # (A refused connection to the rate limit's Redis is no database outage.)
            if not isinstance(self.broken, RateLimitUnavailable) and database_unreachable(self.broken):
                raise DatabaseUnreachable(self.record.code, self.tenant.code, self.broken) from self.broken
            raise self.broken
        return self.summary

    def _should_stop(self) -> bool:
        return self.fatal is not None or self.claims.lost or self.claims.halted is not None or self.broken is not None

    # -- producer -----------------------------------------------------------------------

    async def _produce(self) -> None:
        async for batch in iter_batches(
            self.engine, self.tenant.id, self.channel, self.definition.model.audience, self.clock,
            self.options.batch_size, self.cap, after_id=self.id_range[0], upto_id=self.id_range[1],
        ):
            if self._should_stop():
                return
            self.metrics.observe_batch_load(batch.load_s)
            decided_before, gate_started = dict(self.summary.decided), time.perf_counter()
            candidates = await self._gate_and_record(batch)
            tally = self.batch_log.open(batch, decided_before, self.summary.decided, time.perf_counter() - gate_started)
            for start in range(0, len(candidates), self.claim_chunk):
                if self._should_stop():
                    return
                chunk = candidates[start : start + self.claim_chunk]
                rows = [(job.delivery_id, job.contact_id) for job in chunk]
                claimed = await in_transaction(
                    self.engine, partial(self.claims.claim, rows=rows, bulk=self._bulk), lock=self._write_lock
                )
                ours = {c.delivery_id: c for c in claimed}
                jobs = [job for job in chunk if job.delivery_id in ours]
                for job in jobs:
                    won = ours[job.delivery_id]
                    # Claimed before by a runner that never recorded a result: it may have
                    # reached the provider. Reconcile (SMS) or resend with the same Message-ID.
                    job.in_doubt = won.attempts > 1
                    job.since_us = won.first_claimed_at_us
                for job in jobs:
                    self.batch_log.claimed(tally, job.delivery_id)
                    await self._queue.put(job)
            self.batch_log.seal(tally)

    async def _gate_and_record(self, batch: Batch) -> list[Job]:
        """Gate the batch, record every decision, return the rows this run may try to claim."""
        ids = [row[0] for row in batch.contacts]
        now = batch.now_us
        lease_now = self.claims.clock()
        async with self.engine.connect() as conn:
            existing = await ledger.existing_for(conn, self.tenant.id, self.record.id, self.channel, ids)
        jobs: list[Job] = []
        todo = []
        in_doubt = []
        for row in batch.contacts:
            known = existing.get(row[0])
            if known is None or known.state in (DeliveryState.PENDING, DeliveryState.DEFERRED):
                todo.append(row)
                continue
            if known.purpose == Purpose.CAMPAIGN and known.address and known.state in (DeliveryState.SENT, DeliveryState.SENDING):
                # The address got (or is getting) this campaign: rule 5 for the others.
                self.evaluator.mark_sent(known.address)
            if known.state == DeliveryState.SENDING and not known.is_held(lease_now):
                in_doubt.append((row, known))
        opt_in_sent: set[str] = set()
        first_touched: set[str] = set()
        ever_sent: set[str] = set()
        if self.channel == "sms":
            async with self.engine.connect() as conn:
                addresses = [row[5] for row in todo if row[5]] + [known.address for _row, known in in_doubt if known.address]
                ever_sent = await ledger.addresses_with(conn, self.tenant.id, "sms", addresses, states=(DeliveryState.SENT,))
                first_touched = ever_sent | await ledger.addresses_with(
                    conn, self.tenant.id, "sms", addresses, states=(DeliveryState.SENDING,)
                )
                if self._opt_in:
                    # A pending opt-in request being gated again is not one "already sent".
                    regated = [existing[row[0]].id for row in todo if row[0] in existing]
                    opt_in_sent = await ledger.addresses_with(
                        conn, self.tenant.id, "sms", addresses, purpose=Purpose.OPT_IN_REQUEST,
                        states=(DeliveryState.SENT, DeliveryState.SENDING, DeliveryState.PENDING), exclude_ids=regated,
                    )
        for row, known in in_doubt:
            # Rebuilt exactly as first sent, so reconciliation matches the same text.
            jobs.append(Job(known.id, row[0], row[1], known.address or "", Purpose(known.purpose),
                            first_touch=known.address not in ever_sent))
        if not todo:
            await self._with_names(jobs)
            return jobs
        ledger_rows = batch.ledger
        if len(todo) != len(batch.contacts):
            wanted = {row[0] for row in todo}
            ledger_rows = [event for event in ledger_rows if event[0] in wanted]
        with self.metrics.time_gate_batch(self.channel):
            decisions = self.evaluator.evaluate(todo, ledger_rows, batch.recent_sends, now)
            requests = self._gate_opt_in_requests(todo, decisions, ledger_rows, batch.recent_sends, now, opt_in_sent)
        counts: Counter[tuple[str, str | None]] = Counter((d.decision, reason_code(d) or None) for d in decisions)
        self.metrics.record_decisions(self.tenant.code, self.channel, self.message.kind, counts)

        inserts, updates, sendable = [], [], []
        for row, decision in zip(todo, decisions, strict=True):
            reason = reason_code(decision)
            kind = decision.decision
            purpose = Purpose.CAMPAIGN
            if kind == DecisionKind.SEND:
                state = DeliveryState.PENDING
            elif kind == DecisionKind.DEFER:
                state = DeliveryState.DEFERRED
            elif row[0] in requests:
                # The first text to a lead who has not said YES is the opt-in request itself,
                # now or, inside the lead's quiet hours, when they end.
                purpose = Purpose.OPT_IN_REQUEST
                request = requests[row[0]]
                if request.decision == DecisionKind.DEFER:
                    state, kind, reason, decision = DeliveryState.DEFERRED, request.decision, reason_code(request), request
                else:
                    state = DeliveryState.PENDING
            else:
                state = DeliveryState.SUPPRESSED
            self.summary.count(kind, reason)
            values = {
                "decision": kind, "reason": reason or None, "state": state, "purpose": purpose,
                "defer_until_us": decision.until_us if isinstance(decision, Defer) else None,
                "address": row[5], "updated_at_us": now,
            }
            known = existing.get(row[0])
            if known is None:
                inserts.append({
                    "tenant_id": self.tenant.id, "campaign_id": self.record.id, "contact_id": row[0],
                    "channel": self.channel, "kind": self.message.kind, "attempts": 0, "created_at_us": now, **values,
                })
            else:
                updates.append({"_id": known.id, **values})
            if state == DeliveryState.PENDING:
                sendable.append((row, purpose, known.id if known else None))
        async def record(conn: AsyncConnection) -> dict[int, int]:
            inserted = await ledger.insert_new(conn, inserts)
            await ledger.update_open_rows(conn, updates)
            return inserted

        inserted = await in_transaction(self.engine, record, lock=self._write_lock)
        self.observer("decided", len(todo))
        raced = []
        for row, purpose, delivery_id in sendable:
            delivery_id = delivery_id or inserted.get(row[0])
            if delivery_id is None:
                raced.append(row)
                continue
            jobs.append(Job(delivery_id, row[0], row[1], row[5], purpose, first_touch=row[5] not in first_touched))
        if raced:
            # Another runner inserted these rows first: its decision stands, and whichever
            # of us claims a pending one sends it (the claim decides, not who inserted).
            async with self.engine.connect() as conn:
                theirs = await ledger.existing_for(conn, self.tenant.id, self.record.id, self.channel, [r[0] for r in raced])
            for row in raced:
                known = theirs.get(row[0])
                if known is not None and known.state == DeliveryState.PENDING:
                    jobs.append(Job(known.id, row[0], row[1], known.address or "", Purpose(known.purpose),
                                    first_touch=known.address not in first_touched))
        await self._with_names(jobs)
        return jobs

    def _gate_opt_in_requests(
        self, todo: list[tuple], decisions: list[Decision], ledger_rows: Sequence[tuple], recent: dict[int, int], now: int,
        opt_in_sent: set[str],
    ) -> dict[int, Decision]:
        """Contact id → the opt-in request's own decision (send or defer) for the leads held
        back only for want of a YES, one request per number."""
        waiting = [
            row for row, decision in zip(todo, decisions, strict=True)
            if reason_code(decision) == Reason.AWAITING_SMS_OPT_IN.value and row[5] and row[5] not in opt_in_sent
        ]
        if not waiting:
            return {}
        wanted = {row[0] for row in waiting}
        verdicts = self.opt_in_evaluator.evaluate(waiting, [e for e in ledger_rows if e[0] in wanted], recent, now)
        requests: dict[int, Decision] = {}
        for row, verdict in zip(waiting, verdicts, strict=True):
            if verdict.decision != DecisionKind.SUPPRESS and row[5] not in opt_in_sent:
                requests[row[0]] = verdict
                opt_in_sent.add(row[5])
        return requests

    async def _with_names(self, jobs: list[Job]) -> None:
        """Names for the templates: one query for the batch's sendable contacts."""
        if not jobs:
            return
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(_contacts.c.id, _contacts.c.first_name, _contacts.c.last_name).where(
                    _contacts.c.id.in_([job.contact_id for job in jobs])
                )
            )
            names = {row[0]: (row[1], row[2]) for row in rows}
        for job in jobs:
            job.first_name, job.last_name = names.get(job.contact_id, (None, None))

    # -- workers ------------------------------------------------------------------------

    async def _worker(self) -> None:
        while (job := await self._queue.get()) is not None:
            self._holding += 1
            try:
                await self._send_and_record(job)
            finally:
                self._holding -= 1

    async def _send_and_record(self, job: Job) -> None:
        outcome, refusal = await self._deliver(job)
        if outcome is WITHDRAWN:
            self._withdrawn.append(job.delivery_id)
            self.batch_log.settled(job.delivery_id, None)
            return
        # A policy refusal may be held until its row ends (engine/send/breaker.py);
        # it was refused, so holding it leaves nothing sent and unrecorded.
        settled = self.breaker.observe(job, outcome, refusal)
        if self.breaker.tripped is not None and self.fatal is None:
            self.fatal = self.breaker.tripped
        # Wait until the result is committed before the next message: at most one
        # unrecorded message per worker, whatever happens to this process.
        try:
            await self._record(settled)
        except Exception as exc:  # noqa: BLE001 - kept, and raised by run() once every worker has stopped
            # Not recorded: the rows stay claimed (in doubt), and `resume` settles them.
            # This worker goes on draining the queue, sending nothing, so the producer
            # is never left waiting on a full queue.
            self.broken = self.broken or exc

    async def _record(self, results: list[tuple[Job, Result]]) -> None:
        if len(results) == 1:  # the usual case: no task and no gather per message
            await self.results.record(*results[0])
        else:
            await asyncio.gather(*(self.results.record(job, result) for job, result in results))
        for job, result in results:
            self.batch_log.settled(job.delivery_id, result.state)

    async def _deliver(self, job: Job) -> tuple[Result, PermanentError | None]:
        """The result of one delivery, and the permanent error it came from, if any."""
        options = self.options
        error: Exception | None = None
        # An in-doubt message (an earlier attempt may have reached the provider) is looked
        # up before any resend, on every attempt until a lookup has answered: a lookup that
        # failed must never be followed by a blind send.
        reconcile_first = job.in_doubt
        for attempt in range(options.max_attempts):
            if self.broken is not None:
                return WITHDRAWN, None
            if self.fatal is not None:
                if job.in_doubt:
                    return WITHDRAWN, None
                return Result(DeliveryState.PENDING, error=f"not attempted: {self.fatal}"), None
            if not self.claims.may_dispatch():
                return WITHDRAWN, None
            try:
                if reconcile_first:
                    found = await self.transport.reconcile(self.content, job)
                    if found is not None:
                        self.summary.reconciled += 1
                        return Result(DeliveryState.SENT, provider_id=found), None
                    reconcile_first = False
                try:
                    await self.limiter.acquire()
                except RateLimitUnavailable as exc:
                    # Never unpaced: stop the run; this row goes back to pending (withdrawn).
                    self.broken = self.broken or exc
                    return WITHDRAWN, None
                if not self.claims.may_dispatch():
                    return WITHDRAWN, None
                with self.metrics.time_dispatch(self.channel):
                    provider_id, segments = await self.transport.deliver(self.content, job, guard=self.claims.may_dispatch)
                return Result(DeliveryState.SENT, provider_id=provider_id, segments=segments), None
            except DispatchCancelled:
                return WITHDRAWN, None
            except PermanentError as exc:
                self.metrics.record_transport_error(self.channel, "permanent")
                if exc.stop_cause is not None:
                    # The relay refused us (certificate, credentials, sender), not the
                    # recipient: nothing reached them, and the run stops.
                    self.fatal = self.fatal or exc
                    return Result(DeliveryState.PENDING, error=str(exc)), exc
                return Result(DeliveryState.FAILED, error=f"{exc.code}: {exc.message}", block_cause=exc.block_cause,
                              policy_status=exc.policy_status), exc
            except TransientError as exc:
                self.metrics.record_transport_error(self.channel, "transient")
                error = exc
                if isinstance(exc, TransportTimeoutError):
                    # No answer in time: the message may have been taken. Look before resending.
                    reconcile_first = True
                delay = min(options.retry_max_s, options.retry_base_s * 2**attempt)
                # Full jitter: many workers retrying a recovering relay must not stampede it.
                await asyncio.sleep(random.uniform(0, delay) if attempt + 1 < options.max_attempts else 0)
        return Result(DeliveryState.PENDING, error=f"transient: {error}"), None
