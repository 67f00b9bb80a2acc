"""Wiring for `campaign send` / `resume`: launch, open transports, run, settle the status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.definition import CampaignDefinition
from engine.check import tenant_for
from engine.config import Settings
from engine.db import deliveries as ledger
from engine.db.tenants import TenantRecord, load_tenant
from engine.send.content import Content, EmailChannel, SmsChannel, validate_templates
from engine.send.launch import CampaignRecord, get_campaign, launch
from engine.send.lease import campaign_lease
from engine.send.pipeline import CampaignRun, RunSummary, SendOptions
from engine.timeutil import now_us


@dataclass(frozen=True, slots=True)
class SendResult:
    record: CampaignRecord
    summary: RunSummary
    status: str
    counts: list[tuple[str, str, str, int]]

    @property
    def unfinished(self) -> int:
        return sum(n for state, _d, _r, n in self.counts if state in ("pending", "sending"))

    @property
    def deferred(self) -> int:
        return sum(n for state, _d, _r, n in self.counts if state == "deferred")


async def launch_campaign(engine: AsyncEngine, definition: CampaignDefinition) -> tuple[CampaignRecord, TenantRecord]:
    tenant = await tenant_for(engine, definition)
    templates = validate_templates(definition)
    async with engine.begin() as conn:
        record = await launch(conn, definition, tenant, templates)
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
) -> SendResult:
    async with campaign_lease(engine, record.id):
        async with engine.begin() as conn:
            await ledger.set_campaign_status(conn, record.id, "running", now_us())
        summary = await run_range(engine, record, tenant, settings, options, observer)
        return await settle(engine, record, tenant, summary)


async def run_range(
    engine: AsyncEngine,
    record: CampaignRecord,
    tenant: TenantRecord,
    settings: Settings,
    options: SendOptions,
    observer: Callable[[str, int], None] | None = None,
    id_range: tuple[int, int | None] = (0, None),
) -> RunSummary:
    """Send the part of a campaign whose contact ids fall in (after, upto]: all of it by default."""
    content = Content(record, tenant, settings)
    # Twilio reports delivery (and carrier unsubscribes) to our API's signed webhook.
    callback = f"{settings.public_url}/webhooks/twilio/{tenant.code}/status" if settings.status_callbacks else None
    channel, closer = await open_channel(record.definition.channel, settings, options.concurrency, callback)
    run = CampaignRun(engine, record, tenant, content, channel, options, observer, id_range)
    try:
        summary = await run.run()
    finally:
        await closer()
    summary.fatal = str(run.fatal) if run.fatal is not None else None
    return summary


async def settle(engine: AsyncEngine, record: CampaignRecord, tenant: TenantRecord, summary: RunSummary) -> SendResult:
    """Count the ledger and set the campaign's status from it."""
    async with engine.begin() as conn:
        counts = await ledger.counts_by_state(conn, tenant.id, record.id)
        result = SendResult(record, summary, "", counts)
        status = "incomplete" if result.unfinished else "waiting" if result.deferred else "finished"
        await ledger.set_campaign_status(conn, record.id, status, now_us(), finished=status == "finished")
    return SendResult(record, summary, status, counts)


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
        pool = SmtpPool(settings.smtp_url, size=max(1, concurrency))
        return pool, pool.close
    from engine.transports.sms import TwilioSms

    client = TwilioSms(settings.twilio_url, settings.twilio_account_sid, settings.twilio_auth_token, concurrency=concurrency)
    return client, client.close
