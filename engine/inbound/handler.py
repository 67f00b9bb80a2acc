"""The aiosmtpd handler: recipients it knows, one decision per message, ledger first.

SMTP answers (docs/inbound-mail.md):

- RCPT to an address that is not a tenant's return path or unsubscribe address (tags
  after `+` aside): `550 5.1.1`. The listener is neither a relay nor a catch-all.
- End of DATA: `250` only once what the message says is committed. A database that is down
  or busy: `451 4.3.0`, and the sending MTA retries later: nothing is lost.
- A message that names no delivery (a missing or forged token, an unknown sender, an
  auto-reply, garbage): `250`, recorded nothing, counted as `unmatched`. Refusing it
  would make the relay bounce a bounce back to a postmaster, and would tell a forger which
  tokens are valid; a forged report can record nothing, because the delivery is found
  only through a token signed with CONSENTRY_SECRET.
"""

from __future__ import annotations

import asyncio
import email.message
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.api.choices import unsubscribe_everything
from engine.api.recipients import Recipient, recipient_for_token
from engine.clock import Clock
from engine.config import Settings
from engine.db.tenants import load_tenant
from engine.imports import AddressError, normalize_email
from engine.inbound.addresses import AddressBook, InboundAddress, Role
from engine.inbound.feedback import (
    Feedback,
    delivery_for,
    recipients_at,
    record_bounce,
    record_complaint,
)
from engine.inbound.reports import (
    complaint_of,
    dsn_recipients,
    embedded_return_path,
    parse,
    sender_addresses,
    unsubscribe_token,
)
from engine.render import split_tagged, verify_return_path
from metrics import Instruments

__all__ = ["InboundHandler", "Outcome"]

log = logging.getLogger("consentry.inbound")

# Not available right now: the sender should try again (451), never lose the message.
TRANSIENT = (SQLAlchemyError, OSError)
# What a malformed message can raise from deep inside a parser; it records nothing.
_MALFORMED = (ValueError, TypeError, LookupError, UnicodeError, AttributeError, IndexError)

UNSUBSCRIBE, UNMATCHED, DUPLICATE, REFUSED = "unsubscribe", "unmatched", "duplicate", "refused"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one recipient of one message came to (for the metrics and the log)."""

    tenant: str | None
    kind: str  # unsubscribe | hard_bounce | soft_bounce | complaint | unmatched | duplicate
    events: Counter[str]
    delivery_id: int | None = None


class InboundHandler:
    """aiosmtpd's hooks (`handle_RCPT`, `handle_DATA`) over the address book and the ledger."""

    def __init__(self, engine: AsyncEngine, settings: Settings, clock: Clock, instruments: Instruments) -> None:
        self.engine = engine
        self.clock = clock
        self.instruments = instruments
        self.book = AddressBook(engine, clock)
        # SQLite has one writer: queued here, concurrent sessions' transactions take turns
        # at once instead of meeting the file lock and sleeping in its busy handler.
        self.write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # One place to read the key: unsubscribe and return-path tokens are signed with it.
        # Current first, then retired ones: mail answering a message sent before a rotation
        # still finds its delivery (docs/operations.md, "Rotating secrets").
        self.secrets = settings.link_secrets

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:  # noqa: N802 - aiosmtpd's hook name
        try:
            known = await self.book.lookup(address)
        except TRANSIENT:
            log.exception("inbound: cannot read the address book")
            return "451 4.3.0 Temporary failure, please try again later"
        if known is None:
            self.instruments.record_inbound_mail(None, REFUSED)
            return "550 5.1.1 Recipient address rejected: not a mailbox of this service"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode("utf-8", "replace")
        try:
            outcomes = await self.receive(envelope.mail_from, list(envelope.rcpt_tos), content)
        except TRANSIENT:
            log.exception("inbound: database unavailable, asking the sender to retry")
            return "451 4.3.0 Temporary failure, please try again later"
        for outcome in outcomes:
            self.instruments.record_inbound_mail(outcome.tenant, outcome.kind)
            if outcome.events and outcome.tenant:
                self.instruments.record_ledger_events(outcome.tenant, outcome.events)
            log.info("inbound: %s for tenant %s (delivery %s)", outcome.kind, outcome.tenant or "-", outcome.delivery_id or "-")
        return "250 2.0.0 OK"

    async def receive(self, mail_from: str | None, recipients: list[str], content: bytes) -> list[Outcome]:
        """Act on one message for each of its (known) recipients; committed when it returns."""
        message = parse(content)
        outcomes: list[Outcome] = []
        for address in recipients:
            known = await self.book.lookup(address)
            if known is None:
                continue
            try:
                if known.role == Role.UNSUBSCRIBE:
                    outcomes += await self._unsubscribe(known, message, mail_from)
                else:
                    outcomes.append(await self._report(known, message))
            except _MALFORMED:
                log.warning("inbound: a malformed message to %s recorded nothing", known.role, exc_info=True)
                outcomes.append(Outcome(self._only_tenant(known), UNMATCHED, Counter()))
        return outcomes

    def _only_tenant(self, known: InboundAddress) -> str | None:
        return self.book.tenant_code(known.tenant_ids[0]) if len(known.tenant_ids) == 1 else None

    async def _report(self, known: InboundAddress, message: email.message.Message) -> Outcome:
        """A DSN or an ARF report to a return path: found by its token, or nothing."""
        unmatched = Outcome(self._only_tenant(known), UNMATCHED, Counter())
        tag = known.tag
        if tag is None:
            embedded = embedded_return_path(message)
            tag = split_tagged(embedded)[1] if embedded else None
        claims = verify_return_path(self.secrets, tag) if tag else None
        if claims is None or claims.tenant_id not in known.tenant_ids:
            return unmatched
        async with self.engine.connect() as conn:
            delivery = await delivery_for(conn, claims)
        if delivery is None:
            return unmatched
        tenant = self.book.tenant_code(delivery.tenant_id)
        now = self.clock()
        complaint = complaint_of(message)
        if complaint is not None:
            if complaint.feedback_type == "not-spam":
                return Outcome(tenant, UNMATCHED, Counter(), delivery.id)
            events = await record_complaint(self.engine, delivery, complaint, now, self.write_lock)
            return Outcome(tenant, Feedback.COMPLAINT if events is not None else DUPLICATE, events or Counter(), delivery.id)
        ours = (delivery.address or "").lower()
        bounced = [r for r in dsn_recipients(message) if r.address.lower() == ours]
        if not bounced:
            return Outcome(tenant, UNMATCHED, Counter(), delivery.id)
        recipient = max(bounced, key=lambda r: r.permanent)
        events = await record_bounce(self.engine, delivery, recipient, now, self.write_lock)
        if events is None:
            return Outcome(tenant, DUPLICATE, Counter(), delivery.id)
        return Outcome(tenant, Feedback.HARD_BOUNCE if recipient.permanent else Feedback.SOFT_BOUNCE, events, delivery.id)

    async def _unsubscribe(self, known: InboundAddress, message: email.message.Message, mail_from: str | None) -> list[Outcome]:
        """A mail to the unsubscribe address: the signed token of its subject names the
        recipient; without one, the sender's address within the tenants of this address."""
        recipients: list[Recipient] = []
        token = unsubscribe_token(message)
        async with self.engine.connect() as conn:
            if token is not None:
                found = await recipient_for_token(conn, self.secrets, token)
                if found is not None and found.channel == "email" and found.address and found.tenant.id in known.tenant_ids:
                    recipients.append(found)
            if not recipients:
                for tenant_id in known.tenant_ids:
                    code = self.book.tenant_code(tenant_id)
                    if code is None:
                        continue
                    tenant = await load_tenant(conn, code)
                    for sender in sender_addresses(message, mail_from):
                        try:
                            address, _valid = normalize_email(sender)
                        except AddressError:
                            continue
                        recipients += await recipients_at(conn, tenant, address)
        if not recipients:
            return [Outcome(self._only_tenant(known), UNMATCHED, Counter())]
        # One contact named by both its From and its envelope sender is unsubscribed once.
        recipients = list({(r.tenant.id, r.contact_id): r for r in recipients}.values())
        outcomes = []
        now = self.clock()
        for recipient in recipients:
            note = "unsubscribe by mail" + (f" from campaign {recipient.campaign_code}" if recipient.campaign_code else "")
            counts = await unsubscribe_everything(self.engine, recipient, now, method="mailto", note=note)
            outcomes.append(Outcome(recipient.tenant.code, UNSUBSCRIBE if counts else DUPLICATE, counts or Counter()))
        return outcomes
