"""What a bounce or a complaint records: the delivery row and the consent ledger, together.

Each write is one transaction, committed before the listener answers 250 (engine/inbound
handler): a database error means a 451, the relay retries, nothing is lost. Each is
conditional on what the row already shows, so a report delivered twice (a relay retrying
after a lost 250) records one block, not two:

| report | delivery row | ledger |
|---|---|---|
| hard bounce (failed, 5.x.x) | `sent` → `failed`, `error` = the status and diagnostic, `feedback = hard_bounce` | `block` email, cause `hard_bounce`, method `dsn` |
| soft bounce (delayed, or failed 4.x.x) | `soft_bounces` + 1, `error`; a failed 4.x.x also `sent` → `failed` | nothing: the address is not known bad |
| complaint (ARF) | `feedback = complaint` (state stays `sent`: it was delivered) | `block` email, cause `complaint`, method `feedback_report`; and a `revoke` of the campaign's class and party on the address |
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.api.recipients import Recipient
from engine.db import deliveries as ledger
from engine.db.models import Campaign, Contact, Delivery
from engine.db.retry import in_transaction
from engine.db.states import DeliveryState
from engine.db.tenants import TenantRecord
from engine.imports import contact_ids_for_address, record_events
from engine.inbound.reports import Complaint, DsnRecipient
from engine.render import ReturnPathClaims

__all__ = ["DeliveryRef", "Feedback", "delivery_for", "record_bounce", "record_complaint", "recipients_at"]

_d = Delivery.__table__
_c = Campaign.__table__
_contacts = Contact.__table__


class Feedback(StrEnum):
    """What came back about a delivery (the `feedback` column)."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    id: int
    tenant_id: int
    contact_id: int
    address: str | None
    class_code: str | None  # the campaign's (None: an individual message)
    party: str | None


async def delivery_for(conn: AsyncConnection, claims: ReturnPathClaims) -> DeliveryRef | None:
    """The email delivery a verified return-path token names, in its tenant."""
    row = (
        await conn.execute(
            select(_d.c.id, _d.c.tenant_id, _d.c.contact_id, _d.c.address, _c.c.class_code, _c.c.party)
            .select_from(_d.outerjoin(_c, _c.c.id == _d.c.campaign_id))
            .where(_d.c.id == claims.delivery_id, _d.c.tenant_id == claims.tenant_id, _d.c.channel == "email")
        )
    ).first()
    return None if row is None else DeliveryRef(*row)


async def record_bounce(engine: AsyncEngine, delivery: DeliveryRef, recipient: DsnRecipient, now_us: int,
                       lock: asyncio.Lock | None = None) -> Counter[str] | None:
    """Record one bounced recipient; returns the ledger events recorded (empty for a soft
    bounce), or None when this hard bounce was already recorded."""
    error = recipient.describe()

    async def hard(conn: AsyncConnection) -> Counter[str] | None:
        changed = await conn.execute(
            update(_d)
            .where(_d.c.id == delivery.id, or_(_d.c.feedback.is_(None), _d.c.feedback == Feedback.SOFT_BOUNCE))
            .values(
                feedback=Feedback.HARD_BOUNCE, feedback_at_us=now_us, error=error, updated_at_us=now_us,
                state=case((_d.c.state == DeliveryState.SENT, DeliveryState.FAILED), else_=_d.c.state),
            )
        )
        if changed.rowcount == 0:
            return None
        block = ledger.block_event(delivery.contact_id, "email", delivery.address, Feedback.HARD_BOUNCE, error, now_us, method="dsn")
        await record_events(conn, delivery.tenant_id, [block], recorded_at_us=now_us)
        return Counter({"block": 1})

    async def soft(conn: AsyncConnection) -> Counter[str] | None:
        gave_up = recipient.action == "failed"
        await conn.execute(
            update(_d)
            .where(_d.c.id == delivery.id)
            .values(
                soft_bounces=_d.c.soft_bounces + 1, error=error, updated_at_us=now_us,
                feedback=case((_d.c.feedback.is_(None), Feedback.SOFT_BOUNCE), else_=_d.c.feedback),
                feedback_at_us=case((_d.c.feedback.is_(None), now_us), else_=_d.c.feedback_at_us),
                state=case((_d.c.state == DeliveryState.SENT, DeliveryState.FAILED), else_=_d.c.state) if gave_up else _d.c.state,
            )
        )
        return Counter()

    return await in_transaction(engine, hard if recipient.permanent else soft, lock=lock)


async def record_complaint(engine: AsyncEngine, delivery: DeliveryRef, complaint: Complaint, now_us: int,
                          lock: asyncio.Lock | None = None) -> Counter[str] | None:
    """Record a spam complaint about a delivery; None when it was already recorded.

    A block (cause `complaint`) stops every email to the address, as the mailbox providers
    expect of a sender after a complaint; the revoke of the campaign's class keeps the
    person out of that kind of mail even if the block is lifted later (an `unblock` after
    the person writes in), because a complaint is the strongest "I don't want these"."""
    note = f"{complaint.feedback_type} report" + (f" from {complaint.user_agent}" if complaint.user_agent else "")

    async def write(conn: AsyncConnection) -> Counter[str] | None:
        changed = await conn.execute(
            update(_d)
            .where(_d.c.id == delivery.id, or_(_d.c.feedback.is_(None), _d.c.feedback != Feedback.COMPLAINT))
            .values(feedback=Feedback.COMPLAINT, feedback_at_us=now_us, updated_at_us=now_us)
        )
        if changed.rowcount == 0:
            return None
        events = [ledger.block_event(delivery.contact_id, "email", delivery.address, Feedback.COMPLAINT, note, now_us,
                                     method="feedback_report", actor="recipient")]
        if delivery.class_code is not None:
            events.append({
                "contact_id": delivery.contact_id, "action": "revoke", "channel": "email", "class_code": delivery.class_code,
                "party": delivery.party or "first", "address": delivery.address, "method": "feedback_report",
                "occurred_at_us": now_us, "actor": "recipient", "note": note[:500],
            })
        await record_events(conn, delivery.tenant_id, events, recorded_at_us=now_us)
        return Counter(str(event["action"]) for event in events)

    return await in_transaction(engine, write, lock=lock)


async def recipients_at(conn: AsyncConnection, tenant: TenantRecord, address: str) -> list[Recipient]:
    """The tenant's contacts whose email is `address` (normalised), as unsubscribe
    recipients on the email channel."""
    ids = await contact_ids_for_address(conn, tenant.id, "email", address)
    if not ids:
        return []
    rows = await conn.execute(
        select(_contacts.c.id, _contacts.c.external_id, _contacts.c.first_name)
        .where(_contacts.c.tenant_id == tenant.id, _contacts.c.id.in_(ids))
        .order_by(_contacts.c.id)
    )
    return [Recipient(tenant, row.id, row.external_id, row.first_name, "email", address, None) for row in rows]
