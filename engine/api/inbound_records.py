"""What an inbound text records in the consent ledger, for a batch of texts in one transaction.

engine/api/webhooks.py classifies a text (engine/api/keywords.py) and hands it here through
the webhook writer (engine/api/webhook_writer.py), which runs `record_texts` for every text
that arrived while its last transaction ran. docs/api.md, "SMS keywords", says what each
keyword records; this module is that table in code.

A text is acted on once per MessageSid: a replay (Twilio retrying a webhook whose answer it
lost, or someone resending a captured signed request) records nothing, and the unique key
of inbound_messages decides, so two concurrent deliveries of one webhook cannot both record.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.choices import record
from engine.api.keywords import Keyword
from engine.db.models import InboundMessage
from engine.db.tenants import TenantRecord
from engine.imports import AddressError, contact_ids_for_address, normalize_phone

__all__ = ["RECORDED", "InboundText", "record_texts"]

log = logging.getLogger(__name__)
_inbound = InboundMessage.__table__
# The keywords that change the ledger; the others only get their reply.
RECORDED = frozenset({Keyword.OPT_OUT, Keyword.RESUBSCRIBE, Keyword.CONFIRM})


@dataclass(frozen=True, slots=True)
class InboundText:
    """One signed inbound text, classified, for the tenant whose URL it came to."""

    tenant_code: str
    keyword: Keyword
    sender: str  # the handset's number as Twilio sent it (`From`)
    body: str
    sid: str  # MessageSid ("" if Twilio sent none)


async def record_texts(
    conn: AsyncConnection, texts: list[tuple[TenantRecord, InboundText]], now: int
) -> dict[str, Counter[str]]:
    """Record what each text asks for, in order, inside the caller's transaction; returns
    the events recorded per tenant code and action (for the metrics, once committed)."""
    events_by_tenant: dict[int, tuple[TenantRecord, list[dict[str, object]]]] = {}
    for tenant, text in texts:
        if text.keyword not in RECORDED:
            continue
        try:
            number, _valid, _zones = normalize_phone(text.sender, tenant.policy.country)
        except AddressError:
            log.warning("inbound %s for tenant %s from an unreadable number %r", text.keyword.value, tenant.code,
                        text.sender)
            continue
        if text.sid and not await _first_sight(conn, tenant.id, text.sid, now):
            log.info("inbound %s for tenant %s: MessageSid %s already recorded", text.keyword.value, tenant.code,
                     text.sid)
            continue
        contact_ids = await contact_ids_for_address(conn, tenant.id, "phone", number)
        if not contact_ids:
            # The ledger is per contact: a number no contact has cannot be recorded. The
            # reply still goes out, as carriers require.
            log.warning("inbound %s for tenant %s from %s, which no contact has", text.keyword.value, tenant.code,
                        number)
            continue
        _tenant, events = events_by_tenant.setdefault(tenant.id, (tenant, []))
        events += [event for contact_id in contact_ids
                   for event in _keyword_events(text.keyword, contact_id, number, text.body, now)]
    counts: dict[str, Counter[str]] = {}
    for tenant, events in events_by_tenant.values():
        counts[tenant.code] = await record(conn, tenant.id, events, now)
    return counts


async def _first_sight(conn: AsyncConnection, tenant_id: int, sid: str, now: int) -> bool:
    """Note a MessageSid as acted on; False when it already was."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = await conn.execute(
        dialect.insert(_inbound).values(tenant_id=tenant_id, message_sid=sid[:64], received_at_us=now)
        .on_conflict_do_nothing(index_elements=["tenant_id", "message_sid"])
        .returning(_inbound.c.id)
    )
    return inserted.first() is not None


def _keyword_events(keyword: Keyword, contact_id: int, number: str, body: str, now: int) -> list[dict[str, object]]:
    common = {
        "contact_id": contact_id,
        "channel": "sms",
        "address": number,
        "method": "sms_keyword",
        "occurred_at_us": now,
        "actor": "recipient",
        "note": body[:500],
    }
    if keyword is Keyword.OPT_OUT:
        return [{**common, "action": "block", "cause": "sms_stop"}]
    events = [{**common, "action": "unblock"}]
    if keyword is Keyword.CONFIRM:
        events.append({**common, "action": "grant", "class_code": "*", "party": "first"})
    return events
