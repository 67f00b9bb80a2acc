"""Writing events into the outbox (`webhook_messages`), inside the caller's transaction.

The outbox is how "never lost if the process dies" holds: an event's rows are inserted in
the same transaction as the fact they report (a ledger row, a campaign's final status, a
delivery's failure), so either both are committed or neither is. The dispatcher
(engine/webhooks/dispatcher.py) sends them afterwards, from any process.

Cost, because the consent imports write millions of ledger rows (docs/benchmarks.md):

- a batch of events asks once which of the tenant's endpoints want any of its types
  (`subscriptions`, one indexed query); with none, that is all it costs;
- otherwise the ledger rows the batch inserted are read back once (ids above the highest
  id seen before the insert, joined to their contacts) and their outbox rows written with
  one executemany. A concurrent writer's rows caught in that range already have their
  outbox rows (committed with them): the unique key (tenant, endpoint, event id) and
  ON CONFLICT DO NOTHING keep one.

A new row is due at once (`next_attempt_at_us = 0`): the clock that recorded the event
(a `campaign send --at` tomorrow) need not be the dispatcher's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import (
    Campaign,
    ConsentEvent,
    Contact,
    Delivery,
    Tenant,
    WebhookEndpoint,
    WebhookMessage,
)
from engine.webhooks.events import CONSENT_ACTIONS, EventType, body, event_id, instant, source_of
from engine.webhooks.states import MessageState

__all__ = [
    "LedgerOutbox",
    "enqueue_campaign_finished",
    "enqueue_delivery_failed",
    "ledger_outbox",
    "subscriptions",
]

_endpoints = WebhookEndpoint.__table__
_messages = WebhookMessage.__table__
_events = ConsentEvent.__table__
_contacts = Contact.__table__
_tenants = Tenant.__table__
_deliveries = Delivery.__table__
_campaigns = Campaign.__table__

_MESSAGE_FIELDS = (
    "tenant_id", "endpoint_id", "event_id", "event_type", "payload", "state", "attempts", "next_attempt_at_us",
    "created_at_us",
)
# Index of tenant_id, contact_id, action, recorded_at_us in a ledger row (EVENT_FIELDS order).
_TENANT, _ACTION = 0, 2


async def subscriptions(
    conn: AsyncConnection, tenant_ids: Iterable[int], types: Iterable[EventType]
) -> dict[EventType, list[tuple[int, int]]]:
    """`type -> [(tenant_id, endpoint_id)]` of live endpoints wanting each of `types`."""
    wanted = set(types)
    tenants = sorted(set(tenant_ids))
    if not wanted or not tenants:
        return {}
    rows = await conn.execute(
        select(_endpoints.c.id, _endpoints.c.tenant_id, _endpoints.c.event_types)
        .where(_endpoints.c.tenant_id.in_(tenants), _endpoints.c.deleted_at_us.is_(None))
    )
    found: dict[EventType, list[tuple[int, int]]] = {}
    for endpoint_id, tenant_id, event_types in rows:
        for name in event_types.split():
            if name in wanted:
                found.setdefault(EventType(name), []).append((tenant_id, endpoint_id))
    return found


@dataclass(slots=True)
class LedgerOutbox:
    """What one batch of ledger rows owes the outbox: the endpoints that want its types,
    and the highest ledger id before the batch was inserted."""

    wanted: dict[EventType, list[tuple[int, int]]]
    high_water: int

    async def enqueue(self, conn: AsyncConnection) -> int:
        """Outbox rows for the ledger rows inserted since `ledger_outbox`; returns how many."""
        tenant_ids = sorted({tenant for targets in self.wanted.values() for tenant, _endpoint in targets})
        actions = sorted(event_type.value.partition(".")[2] for event_type in self.wanted)
        query = (
            select(
                _events.c.id, _events.c.tenant_id, _tenants.c.code, _contacts.c.external_id, _events.c.action,
                _events.c.channel, _events.c.class_code, _events.c.party, _events.c.address, _events.c.method,
                _events.c.cause, _events.c.actor, _events.c.basis, _events.c.note, _events.c.occurred_at_us,
                _events.c.recorded_at_us, _events.c.wording_id, _events.c.wording_version, _events.c.linked_from,
            )
            .join(_contacts, _contacts.c.id == _events.c.contact_id)
            .join(_tenants, _tenants.c.id == _events.c.tenant_id)
            # `tenant_id + 0`: the same filter, but no index on it may be chosen. The rows
            # wanted are the newest ids, a range of the primary key; a tenant index would
            # walk the tenant's whole ledger for every batch (quadratic in an import).
            .where(_events.c.id > self.high_water, (_events.c.tenant_id + 0).in_(tenant_ids),
                   _events.c.action.in_(actions))
            .order_by(_events.c.id)
        )
        rows: list[tuple] = []
        targets_of: dict[tuple[str, int], list[int]] = {}  # (action, tenant) -> endpoints
        for event_type, targets in self.wanted.items():
            for tenant, endpoint in targets:
                targets_of.setdefault((event_type.value.partition(".")[2], tenant), []).append(endpoint)
        # Plain tuples, unpacked: this loop runs once per ledger row of an import.
        for (ledger_id, tenant_id, tenant_code, external_id, action, channel, class_code, party, address, method,
             cause, actor, basis, note, occurred_at_us, recorded_at_us, wording_id, wording_version, linked_from) in (
                await conn.execute(query)):
            endpoints = targets_of.get((action, tenant_id))
            if not endpoints:
                continue
            event_type = EventType("consent." + action)
            identifier = event_id("consent", ledger_id)
            payload = body(event_type, identifier, recorded_at_us, tenant_code, {
                "ledger_event_id": ledger_id,
                "contact": {"external_id": external_id},
                "action": action,
                "channel": channel,
                "class": class_code,
                "party": party,
                "address": address,
                "method": method,
                "cause": cause,
                "source": source_of(method, cause),
                "actor": actor,
                "basis": basis,
                "note": note,
                "wording": {"id": wording_id, "version": wording_version} if wording_id else None,
                # A carbon copy onto a linked contact names the contact the change was made
                # on, so a DMS that syncs its own linked records does not copy it again.
                "linked_from": {"external_id": linked_from} if linked_from else None,
                "occurred_at": instant(occurred_at_us),
                "recorded_at": instant(recorded_at_us),
            })
            rows.extend(_message(tenant_id, endpoint, identifier, event_type, payload, recorded_at_us)
                        for endpoint in endpoints)
        await _insert(conn, rows)
        return len(rows)


async def ledger_outbox(conn: AsyncConnection, rows: Sequence[tuple]) -> LedgerOutbox | None:
    """Call before inserting ledger rows (in `EVENT_FIELDS` order): None when no endpoint
    wants any of them (the common case: one query, nothing else), else the state to
    `enqueue` from once they are inserted."""
    types = {EventType("consent." + row[_ACTION]) for row in rows if row[_ACTION] in CONSENT_ACTIONS}
    if not types:
        return None
    wanted = await subscriptions(conn, {row[_TENANT] for row in rows}, types)
    if not wanted:
        return None
    high = (await conn.execute(select(func.coalesce(func.max(_events.c.id), 0)))).scalar_one()
    return LedgerOutbox(wanted, int(high))


async def enqueue_campaign_finished(
    conn: AsyncConnection, tenant_id: int, campaign_id: int, counts: Iterable[tuple[str, int]], stamp: int
) -> int:
    """`campaign.finished` for a campaign whose status just became finished; `counts` are
    (outcome, recipients). Settling a finished campaign again enqueues nothing new."""
    wanted = await subscriptions(conn, [tenant_id], [EventType.CAMPAIGN_FINISHED])
    targets = [endpoint for _tenant, endpoint in wanted.get(EventType.CAMPAIGN_FINISHED, ())]
    if not targets:
        return 0
    campaign = (
        await conn.execute(
            select(_campaigns.c.code, _campaigns.c.kind, _campaigns.c.channel, _campaigns.c.class_code,
                   _campaigns.c.party, _campaigns.c.created_at_us, _campaigns.c.finished_at_us, _tenants.c.code.label("tenant"))
            .join(_tenants, _tenants.c.id == _campaigns.c.tenant_id)
            .where(_campaigns.c.id == campaign_id, _campaigns.c.tenant_id == tenant_id)
        )
    ).one()
    totals = {outcome: n for outcome, n in sorted(counts) if n}
    identifier = event_id("campaign.finished", campaign_id)
    payload = body(EventType.CAMPAIGN_FINISHED, identifier, stamp, campaign.tenant, {
        "campaign": campaign.code,
        "kind": campaign.kind,
        "channel": campaign.channel,
        "class": campaign.class_code,
        "party": campaign.party,
        "launched_at": instant(campaign.created_at_us),
        "finished_at": instant(campaign.finished_at_us or stamp),
        "recipients": sum(totals.values()),
        "outcomes": totals,
    })
    rows = [_message(tenant_id, endpoint, identifier, EventType.CAMPAIGN_FINISHED, payload, stamp) for endpoint in targets]
    await _insert(conn, rows)
    return len(rows)


async def enqueue_delivery_failed(conn: AsyncConnection, tenant_id: int, delivery_ids: Sequence[int], stamp: int) -> int:
    """`delivery.failed` for these deliveries, those of them that are failed now (a result
    another runner overwrote is not reported by us)."""
    if not delivery_ids:
        return 0
    wanted = await subscriptions(conn, [tenant_id], [EventType.DELIVERY_FAILED])
    targets = [endpoint for _tenant, endpoint in wanted.get(EventType.DELIVERY_FAILED, ())]
    if not targets:
        return 0
    query = (
        select(_deliveries.c.id, _deliveries.c.channel, _deliveries.c.kind, _deliveries.c.purpose, _deliveries.c.address,
               _deliveries.c.error, _deliveries.c.attempts, _deliveries.c.provider_id, _contacts.c.external_id,
               _campaigns.c.code.label("campaign"), _tenants.c.code.label("tenant"))
        .join(_contacts, _contacts.c.id == _deliveries.c.contact_id)
        .join(_tenants, _tenants.c.id == _deliveries.c.tenant_id)
        .outerjoin(_campaigns, _campaigns.c.id == _deliveries.c.campaign_id)
        .where(_deliveries.c.tenant_id == tenant_id, _deliveries.c.id.in_(sorted(set(delivery_ids))),
               _deliveries.c.state == "failed")
        .order_by(_deliveries.c.id)
    )
    rows: list[tuple] = []
    for delivery in await conn.execute(query):
        identifier = event_id("delivery.failed", delivery.id)
        payload = body(EventType.DELIVERY_FAILED, identifier, stamp, delivery.tenant, {
            "delivery_id": delivery.id,
            "campaign": delivery.campaign,
            "kind": delivery.kind,
            "purpose": delivery.purpose,
            "contact": {"external_id": delivery.external_id},
            "channel": delivery.channel,
            "address": delivery.address,
            "error": delivery.error,
            "attempts": delivery.attempts,
            "provider_id": delivery.provider_id,
            "failed_at": instant(stamp),
        })
        rows.extend(_message(tenant_id, endpoint, identifier, EventType.DELIVERY_FAILED, payload, stamp) for endpoint in targets)
    await _insert(conn, rows)
    return len(rows)


def _message(tenant_id: int, endpoint_id: int, identifier: str, event_type: EventType, payload: str, stamp: int) -> tuple:
    return (tenant_id, endpoint_id, identifier, event_type.value, payload, MessageState.PENDING.value, 0, 0, stamp)


# Compiled once per dialect: executemany of tuples through the driver, as the imports do
# (engine/imports/statements.py explains why dictionaries through execute() cost too much).
_COMPILED: dict[tuple[str, str, str], tuple[str, tuple[int, ...]]] = {}


async def _insert(conn: AsyncConnection, rows: list[tuple]) -> None:
    if not rows:
        return
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    compiled = _COMPILED.get(key)
    if compiled is None:
        module: Any = postgresql if dialect.name == "postgresql" else sqlite
        statement = module.insert(_messages).inline().on_conflict_do_nothing(
            index_elements=["tenant_id", "endpoint_id", "event_id"]
        ).compile(dialect=dialect, column_keys=list(_MESSAGE_FIELDS))
        order = tuple(_MESSAGE_FIELDS.index(name) for name in _names(statement))
        compiled = _COMPILED[key] = (str(statement), order)
    sql, order = compiled
    await conn.exec_driver_sql(sql, [tuple(row[i] for i in order) for row in rows])


def _names(statement: Any) -> tuple[str, ...]:
    names = tuple(statement.positiontup or ())
    if sorted(names) != sorted(_MESSAGE_FIELDS):
        raise RuntimeError(f"outbox insert binds {names}, expected {_MESSAGE_FIELDS}")
    return names
