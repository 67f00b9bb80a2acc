"""Wiring for `campaign send` / `resume`: launch, open transports, run, settle the status.

Any number of runners may work on one campaign at once (a second `send`, a `resume` from
cron, arq workers): the claims of engine/send/claims.py keep every message single, so
there is no campaign-wide lock to wait for or to steal.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.definition import CampaignDefinition
from engine.clock import Clock
from engine.config import Settings, TlsMode
from engine.db import deliveries as ledger
from engine.db.retry import database_unreachable
from engine.db.states import (
    HALTED_STATUSES,
    CampaignStatus,
    DeliveryState,
    Outcome,
    Purpose,
    outcome_of,
)
from engine.db.tenants import TenantRecord, load_tenant
from engine.errors import ConsentryError
from engine.send.campaign_inputs import tenant_for
from engine.send.content import Content, EmailChannel, SmsChannel, validate_templates
from engine.send.dkim import key_for, load_signer
from engine.send.errors import DatabaseUnreachable
from engine.send.launch import CampaignRecord, get_campaign, launch
from engine.send.pipeline import CampaignRun, RunSummary, SendOptions
from engine.send.ratelimit import Pacer
from engine.webhooks.outbox import enqueue_campaign_finished


@dataclass(frozen=True, slots=True)
class SendResult:
    record: CampaignRecord
    summary: RunSummary
    status: CampaignStatus
    counts: list[tuple[DeliveryState, Purpose, str, str, int]]  # state, purpose, decision, reason, n
    # Rows another runner is sending right now (a second `send`, a worker): not ours to
    # report as stuck.
    held_elsewhere: int = 0

    @property
    def outcomes(self) -> Counter[Outcome]:
        """Recipients per outcome: the parts always add up to `total`."""
        totals: Counter[Outcome] = Counter()
        for state, purpose, _decision, _reason, n in self.counts:
            totals[outcome_of(state, purpose)] += n
        return totals

    @property
    def total(self) -> int:
        return sum(n for *_key, n in self.counts)

    @property
    def unfinished(self) -> int:
        return sum(n for state, _p, _d, _r, n in self.counts if state in (DeliveryState.PENDING, DeliveryState.SENDING))

    @property
    def deferred(self) -> int:
        return sum(n for state, _p, _d, _r, n in self.counts if state == DeliveryState.DEFERRED)


async def launch_campaign(
    engine: AsyncEngine, definition: CampaignDefinition, clock: Clock, status: CampaignStatus = CampaignStatus.RUNNING
) -> tuple[CampaignRecord, TenantRecord]:
    tenant = await tenant_for(engine, definition)
    templates = validate_templates(definition)
    sender = definition.model.sender.email
    if definition.channel == "email" and sender:
        try:  # a key that cannot sign stops the launch, before anything is recorded
            key = key_for(tenant.settings.dkim, sender)
            if key is not None:
                load_signer(key)
        except ConsentryError as exc:
            raise definition.error("sender", str(exc)) from None
    async with engine.begin() as conn:
        record = await launch(conn, definition, tenant, templates, clock(), status)
    if not record.created:
        # Continue what was launched, under the policy version it was launched with.
        async with engine.connect() as conn:
            tenant = await load_tenant(conn, definition.tenant, record.policy_version)
    return record, tenant


async def resume_target(engine: AsyncEngine, tenant_code: str, code: str) -> tuple[CampaignRecord, TenantRecord]:
    async with engine.connect() as conn:
        tenant = await load_tenant(conn, tenant_code)
        record = await get_campaign(conn, tenant.id, code)
        tenant = await load_tenant(conn, tenant_code, record.policy_version)
    return record, tenant


async def run_campaign(
    engine: AsyncEngine,
    record: CampaignRecord,
    tenant: TenantRecord,
    settings: Settings,
    options: SendOptions,
    observer: Callable[[str, int], None] | None = None,
    *,
    clock: Clock,
    lease_clock: Clock | None = None,
    lift_pause: bool = False,
) -> SendResult:
    """Send the whole campaign. `clock` is the gating clock; `lease_clock` (default: the
    same) the real passing of time between runners (engine/send/claims.py).

    A paused campaign stays paused (the run claims nothing) unless `lift_pause`: what
    `campaign resume` and the API's resume ask. A cancelled one is never run again.

    The database going out of reach stops the run with DatabaseUnreachable, which names the
    `campaign resume` that finishes it."""
    check_transport(record.definition.channel, settings)
    try:
        async with engine.begin() as conn:
            await ledger.start_running(conn, record.id, clock(), lift_pause=lift_pause)
        summary = await run_range(engine, record, tenant, settings, options, observer, clock=clock, lease_clock=lease_clock)
        return await settle(engine, record, tenant, summary, clock, lease_clock)
    except DatabaseUnreachable:
        raise
    except Exception as exc:
        if database_unreachable(exc):
            raise DatabaseUnreachable(record.code, tenant.code, exc) from exc
        raise


async def run_range(
    engine: AsyncEngine,
    record: CampaignRecord,
    tenant: TenantRecord,
    settings: Settings,
    options: SendOptions,
    observer: Callable[[str, int], None] | None = None,
    id_range: tuple[int, int | None] = (0, None),
    *,
    clock: Clock,
    lease_clock: Clock | None = None,
    pacer: Pacer | None = None,
) -> RunSummary:
    """Send the part of a campaign whose contact ids fall in (after, upto]: all of it by default.

    Returns when every row of the range is final, deferred, or left pending by a transport
    error. Rows another runner holds are waited for: if that runner is alive it finishes
    them; if it died or froze, its claims lapse within the claim ttl and the next pass here
    takes them over (reconciling what may have gone out).

    `pacer` is the sender's rate limit when other processes share it (the arq backend's,
    through Redis); by default this run paces alone.
    """
    content = Content(record, tenant, settings, clock)
    content.sign_in_processes(settings.dkim_processes)
    # Twilio reports delivery (and carrier unsubscribes) to our API's signed webhook.
    callback = f"{settings.status_callback_base}/webhooks/twilio/{tenant.code}/status" if settings.status_callbacks else None
    channel, closer = await open_channel(record.definition.channel, settings, options.concurrency, callback)
    summary = RunSummary()
    try:
        while True:
            run = CampaignRun(engine, record, tenant, content, channel, options, clock, observer, id_range,
                              lease_clock=lease_clock, pacer=pacer)
            summary.add(await run.run())
            if run.fatal is not None:
                summary.fatal, summary.stop_cause = str(run.fatal), run.fatal.stop_cause
            if summary.fatal or summary.lost_claims or summary.halted:
                break
            if not await _wait_for_others(engine, record, tenant, id_range, options, lease_clock or clock):
                break
    finally:
        await closer()
        content.close()
    return summary


async def _wait_for_others(
    engine: AsyncEngine, record: CampaignRecord, tenant: TenantRecord, id_range: tuple[int, int | None],
    options: SendOptions, clock: Clock,
) -> bool:
    """Wait while another runner holds rows of the range; True when some of them were left
    unfinished (its claims lapsed), so another pass should take them over."""
    held_any = False
    while True:
        async with engine.connect() as conn:
            held_until = await ledger.held_in_range(conn, tenant.id, record.id, id_range, clock())
            if held_until is None:
                return held_any and await ledger.open_in_range(conn, tenant.id, record.id, id_range) > 0
        held_any = True
        await asyncio.sleep(min(options.claim_ttl_s / 6, max(0.05, (held_until - clock()) / 1e6 + 0.01)))


async def settle(
    engine: AsyncEngine, record: CampaignRecord, tenant: TenantRecord, summary: RunSummary, clock: Clock,
    lease_clock: Clock | None = None,
) -> SendResult:
    """Count the ledger and set the campaign's status from it."""
    async with engine.begin() as conn:
        current = await ledger.campaign_status(conn, record.id)
        stamp = clock()
        if current == CampaignStatus.CANCELLED:
            # Rows this run withdrew went back to pending: a cancel makes them final.
            await ledger.cancel_open(conn, tenant.id, record.id, stamp)
        counts = await ledger.counts_by_state(conn, tenant.id, record.id)
        held = await ledger.held_elsewhere(conn, tenant.id, record.id, (lease_clock or clock)())
        result = SendResult(record, summary, CampaignStatus.RUNNING, counts, held)
        if current in HALTED_STATUSES:
            # A pause or cancel is the operator's: no runner overwrites it.
            return SendResult(record, summary, current, counts, held)
        if held:
            status = CampaignStatus.RUNNING
        elif result.unfinished:
            status = CampaignStatus.INCOMPLETE
        elif result.deferred:
            status = CampaignStatus.WAITING
        else:
            status = CampaignStatus.FINISHED
        written = await ledger.set_campaign_status(conn, record.id, status, stamp, finished=status == CampaignStatus.FINISHED)
        if not written:  # paused or cancelled meanwhile
            return SendResult(record, summary, await ledger.campaign_status(conn, record.id), counts, held)
        if status == CampaignStatus.FINISHED:
            # In the same transaction as the status: the event exists iff the campaign
            # finished (settling it again enqueues nothing new: same event id).
            outcomes = [(str(outcome), n) for outcome, n in result.outcomes.items()]
            await enqueue_campaign_finished(conn, tenant.id, record.id, outcomes, stamp)
    return SendResult(record, summary, status, counts, held)


def check_transport(channel: str, settings: Settings) -> None:
    """Refuse to start (InputError, exit 2) when the channel's transport cannot be set up
    from the settings: a CA file or client certificate that is missing or not PEM. The TLS
    context is built here once and reused by every connection (engine/transports/smtp.py)."""
    if channel == "email" and settings.relay.tls != TlsMode.NONE:
        from engine.transports.smtp import tls_context_for

        tls_context_for(settings.relay)


async def open_channel(channel: str, settings: Settings, concurrency: int, status_callback: str | None = None):  # noqa: ANN201
    """The pipeline's adapter for a channel, and how to close it."""
    transport, closer = await open_channel_transport(channel, settings, concurrency)
    return (EmailChannel(transport) if channel == "email" else SmsChannel(transport, status_callback)), closer


async def open_channel_transport(channel: str, settings: Settings, concurrency: int):  # noqa: ANN201
    """The transport for a channel (an SMTP pool, a Twilio client), and how to close it."""
    if channel == "email":
        from engine.transports.smtp import SmtpPool

        # One message per four round trips on a session: with a slow relay the number of
        # connections sets the rate, so the pool follows the concurrency.
        pool = SmtpPool(settings.relay, size=max(1, concurrency))
        return pool, pool.close
    from engine.transports.sms import TwilioSms

    client = TwilioSms(settings.twilio_url, settings.twilio_account_sid, settings.twilio_auth_token, concurrency=concurrency)
    return client, client.close
