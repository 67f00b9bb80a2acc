"""What a recipient gets (rendered once per campaign, filled per recipient) and the two
channel adapters that hand it to a transport.

The pipeline sees only `Content` and a channel transport with `deliver` / `reconcile`; the
rendering (engine/render) and the wire (engine/transports) stay behind them.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from campaigns.definition import CampaignDefinition
from engine.clock import Clock
from engine.config import Settings
from engine.db.states import Kind, Purpose
from engine.db.tenants import TenantRecord
from engine.render import (
    CampaignContext,
    DkimSigner,
    EmailSkeleton,
    RenderError,
    SmsBody,
    SmsRenderer,
    TemplateSource,
    compile_campaign_templates,
    find_templates,
)
from engine.send.dkim import DkimPool, key_for, load_signer
from engine.send.identities import bulk_identity, envelope_sender
from engine.send.launch import CampaignRecord
from metrics import Instruments, default_instruments


@dataclass(slots=True)
class Job:
    delivery_id: int
    contact_id: int
    external_id: str
    address: str
    purpose: Purpose
    first_touch: bool = False
    in_doubt: bool = False
    since_us: int = 0  # in doubt: when the transport call began
    first_name: str | None = None
    last_name: str | None = None


class Content:
    """A campaign's compiled templates and the per-recipient context."""

    def __init__(
        self, record: CampaignRecord, tenant: TenantRecord, settings: Settings, clock: Clock,
        instruments: Instruments | None = None,
    ) -> None:
        model = record.definition.model
        # Rendering is timed per message where it happens, whichever stage calls it.
        self._render_seconds = (instruments or default_instruments()).render_histogram(model.channel)
        self.clock = clock
        self.record = record
        self.channel = model.channel
        self.secret = settings.secret.encode()
        self.tenant_id = tenant.id
        self.sender_phone = model.sender.phone
        policy = tenant.policy
        self.identity = bulk_identity(tenant.settings.senders, model.sender.email, model.sender.name, tenant.name) if self.channel == "email" else None
        self.sender_email = self.identity.email if self.identity else None
        sender_name = self.identity.name if self.identity else (model.sender.name or tenant.name)
        self.domain = (self.sender_email or "consentry.invalid").rpartition("@")[2]
        self.campaign_context = CampaignContext(
            tenant_id=tenant.id, campaign_id=record.id, channel=self.channel, secret=self.secret,
            public_url=settings.public_url, tenant_name=tenant.name,
            postal_address=policy.postal_address, sender_name=sender_name,
            agent_name=model.agent_name or sender_name,
        )
        source = TemplateSource.from_snapshot(record.templates["source"])
        templates = compile_campaign_templates(source, subject=record.templates.get("subject"))
        self.dkim: DkimSigner | None = None
        self._dkim_pool: DkimPool | None = None
        if self.identity is not None:
            key = key_for(tenant.settings.dkim, self.identity.email)
            self.dkim = None if key is None else load_signer(key)
            self.email = EmailSkeleton.from_templates(
                templates, sender_email=self.identity.email, sender_name=sender_name, bulk=model.kind == Kind.BULK,
                postal_address=policy.postal_address or None, unsubscribe_mailto=self.identity.unsubscribe,
                reply_to=self.identity.reply_to,
            )
        else:
            self.sms = SmsRenderer.from_templates(
                templates, opt_out_footer=policy.sms.opt_out_footer, opt_in_message=policy.sms.opt_in_message
            )

    def context(self, job: Job) -> dict[str, Any]:
        return self.campaign_context.for_recipient(
            job.contact_id, external_id=job.external_id, first_name=job.first_name, last_name=job.last_name,
            email=job.address if self.channel == "email" else None,
            phone=job.address if self.channel == "sms" else None,
        )

    def sign_in_processes(self, processes: int) -> None:
        """Sign in a pool of worker processes (a campaign); `close` shuts it down."""
        if self.dkim is not None and self._dkim_pool is None:
            self._dkim_pool = DkimPool(self.dkim, processes or None)

    def close(self) -> None:
        if self._dkim_pool is not None:
            self._dkim_pool.close()
            self._dkim_pool = None

    async def signed(self, message: bytes) -> bytes:
        """`message` DKIM-signed when the sender's domain has a key, else as it is."""
        if self._dkim_pool is not None:
            return await self._dkim_pool.sign(message)
        if self.dkim is not None:
            return self.dkim.sign(message) + message
        return message

    def message_id(self, job: Job) -> str:
        """Deterministic per delivery, so an in-doubt resend carries the same Message-ID."""
        tag = hmac.digest(self.secret, f"{self.record.id}:{job.contact_id}".encode(), "sha256").hex()[:12]
        return f"<c{self.record.id}.r{job.contact_id}.{tag}@{self.domain}>"

    def envelope_sender(self, job: Job) -> str:
        """MAIL FROM: the return path tagged with this delivery's token, so a bounce or a
        complaint sent back to it names the delivery (engine/inbound)."""
        assert self.identity is not None
        return envelope_sender(self.identity.return_path, self.secret, self.tenant_id, job.delivery_id)

    def email_bytes(self, job: Job, message_id: str) -> bytes:
        started = time.perf_counter()  # a duration, not an instant: the clock is not involved
        name = " ".join(part for part in (job.first_name, job.last_name) if part) or None
        message = self.email.render(job.address, name, self.context(job), message_id, self.clock())
        self._render_seconds.observe(time.perf_counter() - started)
        return message

    def sms_body(self, job: Job) -> SmsBody:
        started = time.perf_counter()
        # No token signed for templates that show no unsubscribe link (most texts: they say
        # "Reply STOP"); `context` otherwise, as email always does.
        context = self.campaign_context.for_recipient(
            job.contact_id, external_id=job.external_id, first_name=job.first_name,
            last_name=job.last_name, phone=job.address, tokens=self.sms.reads_unsubscribe_links,
        )
        if job.purpose == Purpose.OPT_IN_REQUEST:
            body = self.sms.render_opt_in_request(context)
        else:
            body = self.sms.render(context, first_touch=job.first_touch)
        self._render_seconds.observe(time.perf_counter() - started)
        return body


def snapshot_templates(source: TemplateSource, subject: str | None) -> dict[str, Any]:
    """What a launch records, so a resume renders exactly what was launched."""
    return {"source": source.snapshot(), "subject": subject}


class EmailChannel:
    def __init__(self, pool) -> None:  # noqa: ANN001 - engine.transports.SmtpPool
        self.pool = pool

    async def deliver(self, content: Content, job: Job, guard: Callable[[], bool] | None = None) -> tuple[str, int | None]:
        """Send one email; `guard` is asked once more just before the message goes (engine/send/claims.py)."""
        message_id = content.message_id(job)
        message = await content.signed(content.email_bytes(job, message_id))
        # The skeleton writes every line with CRLF (engine/render/skeleton.py), DKIM's header too.
        await self.pool.send_raw(content.envelope_sender(job), [job.address], message, guard=guard, crlf=True)
        return message_id, None

    async def reconcile(self, content: Content, job: Job) -> str | None:
        # SMTP has no way to ask whether a message arrived; the resend reuses the Message-ID.
        return None


class SmsChannel:
    def __init__(self, client, status_callback: str | None = None) -> None:  # noqa: ANN001
        self.client = client
        self.status_callback = status_callback

    async def deliver(self, content: Content, job: Job, guard: Callable[[], bool] | None = None) -> tuple[str, int | None]:
        """Send one text; `guard` is asked right before the request goes (TwilioSms.send)."""
        body = content.sms_body(job)
        sid, segments = await self.client.send(job.address, content.sender_phone, body.text, self.status_callback, guard=guard)
        return sid, segments or body.segments

    async def reconcile(self, content: Content, job: Job) -> str | None:
        """Did the interrupted attempt reach Twilio? Look for its exact text since then.

        Both variants are tried: whether the STOP footer went with it depends on whether
        another text reached the number first, which a crash can leave unknowable.
        """
        bodies = {content.sms_body(job).text}
        if job.purpose == Purpose.CAMPAIGN:
            bodies.add(content.sms_body(replace(job, first_touch=not job.first_touch)).text)
        for text in bodies:
            found = await self.client.find_sent(job.address, content.sender_phone, text, job.since_us)
            if found is not None:
                return found
        return None


def validate_templates(definition: CampaignDefinition) -> dict:
    """Find and compile the campaign's templates; returns the snapshot a launch records.

    A missing or unsafe template is the launcher's to fix, before anything is recorded.
    """
    model = definition.model
    try:
        source = find_templates(model.channel, model.template, definition.directory)
        compile_campaign_templates(source, subject=model.subject)
    except RenderError as exc:
        raise definition.error("template", str(exc)) from None
    return snapshot_templates(source, subject=model.subject)
