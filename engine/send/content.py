"""What a recipient gets (rendered once per campaign, filled per recipient) and the two
channel adapters that hand it to a transport.

The pipeline sees only `Content` and a channel transport with `deliver` / `reconcile`; the
rendering (engine/render) and the wire (engine/transports) stay behind them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from engine.config import Settings
from engine.db.tenants import TenantRecord
from engine.render import EmailSkeleton, SmsRenderer, compile_campaign_templates, sign_token
from engine.send.launch import CampaignRecord


@dataclass(slots=True)
class Job:
    delivery_id: int
    contact_id: int
    external_id: str
    address: str
    purpose: str  # campaign | opt_in_request
    first_touch: bool = False
    in_doubt: bool = False
    since_us: int = 0  # in doubt: when the transport call began
    first_name: str | None = None
    last_name: str | None = None


class Content:
    """A campaign's compiled templates and the per-recipient context."""

    def __init__(self, record: CampaignRecord, tenant: TenantRecord, settings: Settings) -> None:
        model = record.definition.model
        self.record = record
        self.tenant = tenant
        self.settings = settings
        self.channel = model.channel
        self.secret = settings.secret.encode()
        self.sender_email = model.sender.email
        self.sender_phone = model.sender.phone
        self.sender_name = model.sender.name or tenant.name
        self.agent_name = model.agent_name or self.sender_name
        self.domain = (self.sender_email or "consentry.invalid").rpartition("@")[2]
        templates = compile_campaign_templates(record.templates)
        policy = tenant.policy
        if self.channel == "email":
            self.email = EmailSkeleton(
                sender_name=self.sender_name,
                sender_email=self.sender_email,
                subject_template=templates.subject,
                text_template=templates.text,
                html_template=templates.html,
                bulk=model.kind == "bulk",
                postal_address=policy.get("postal_address") or "",
                unsubscribe_mailto=f"unsubscribe@{self.domain}",
            )
        else:
            self.sms = SmsRenderer(templates.text, policy["sms"])

    def context(self, job: Job) -> dict[str, Any]:
        token = sign_token(self.secret, self.tenant.id, self.record.id, job.contact_id, self.channel)
        base = self.settings.public_url
        return {
            "first_name": job.first_name or "",
            "last_name": job.last_name or "",
            "external_id": job.external_id,
            "email": job.address if self.channel == "email" else "",
            "phone": job.address if self.channel == "sms" else "",
            "tenant_name": self.tenant.name,
            "postal_address": self.tenant.policy.get("postal_address") or "",
            "unsubscribe_url": f"{base}/u/{token}",
            "preferences_url": f"{base}/p/{token}",
            "sender_name": self.sender_name,
            "agent_name": self.agent_name,
            "unsubscribe_token": token,
        }

    def message_id(self, job: Job) -> str:
        """Deterministic per delivery, so an in-doubt resend carries the same Message-ID."""
        tag = hmac.new(self.secret, f"{self.record.id}:{job.contact_id}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"<c{self.record.id}.r{job.contact_id}.{tag}@{self.domain}>"

    def email_bytes(self, job: Job) -> bytes:
        name = " ".join(part for part in (job.first_name, job.last_name) if part)
        return self.email.render(job.address, name, self.context(job), self.message_id(job), formatdate(localtime=False, usegmt=True))

    def sms_body(self, job: Job):  # noqa: ANN201 - engine.render.SmsBody
        context = self.context(job)
        if job.purpose == "opt_in_request":
            return self.sms.render_opt_in_request(context)
        return self.sms.render(context, first_touch=job.first_touch)


class EmailChannel:
    def __init__(self, pool) -> None:  # noqa: ANN001 - engine.transports.SmtpPool
        self.pool = pool

    async def deliver(self, content: Content, job: Job) -> tuple[str, int | None]:
        await self.pool.send_raw(content.sender_email, [job.address], content.email_bytes(job))
        return content.message_id(job), None

    async def reconcile(self, content: Content, job: Job) -> str | None:
        # SMTP has no way to ask whether a message arrived; the resend reuses the Message-ID.
        return None


class SmsChannel:
    def __init__(self, client, status_callback: str | None = None) -> None:  # noqa: ANN001
        self.client = client
        self.status_callback = status_callback

    async def deliver(self, content: Content, job: Job) -> tuple[str, int | None]:
        body = content.sms_body(job)
        sid, segments = await self.client.send(job.address, content.sender_phone, body.text, self.status_callback)
        return sid, segments or body.segments

    async def reconcile(self, content: Content, job: Job) -> str | None:
        body = content.sms_body(job)
        return await self.client.find_sent(job.address, content.sender_phone, body.text, job.since_us)
