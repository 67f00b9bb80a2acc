"""`consentry explain`: every rule's verdict for one contact and message, with its evidence."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db.batches import load_one
from engine.db.models import ConsentEvent
from engine.db.tenants import load_tenant
from engine.errors import InputError, NotFoundError
from engine.send.campaign_inputs import cap_for
from engine.timeutil import iso_z
from gating import Message, compile_policy, explain


@dataclass(frozen=True, slots=True)
class ExplainResult:
    tenant: str
    external_id: str
    channel: str
    address: str | None
    at: str
    explanation: Any
    events: dict[int, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        body = self.explanation.to_dict()
        for rule in body.get("rules", []):
            rule["events"] = [self.events[i] for i in rule.get("event_ids", ()) if i in self.events]
        return {
            "tenant": self.tenant,
            "contact": self.external_id,
            "channel": self.channel,
            "address": self.address,
            "at": self.at,
            **body,
        }


async def explain_contact(
    engine: AsyncEngine,
    tenant_code: str,
    external_id: str,
    channel: str,
    class_code: str,
    party: str,
    kind: str,
    at_us: int,
    *,
    policy_version: int | None = None,
    seen_addresses: Collection[str] = (),
) -> ExplainResult:
    """`policy_version`: the version a campaign was launched with (default the current one);
    `seen_addresses`: addresses that already got the campaign (rule 5), for a campaign's
    recipient."""
    async with engine.connect() as conn:
        tenant = await load_tenant(conn, tenant_code, policy_version)
    if class_code not in tenant.policy.classes:
        raise InputError(f"class {class_code!r} is not in tenant {tenant_code!r}'s policy", field="--class")
    message = Message(kind=kind, channel=channel, class_code=class_code, party=party)
    policy = compile_policy(tenant.policy, message)
    batch = await load_one(engine, tenant.id, channel, external_id, at_us, cap_for(tenant.policy, channel))
    if batch is None:
        raise NotFoundError(f"contact {external_id!r} not found in tenant {tenant_code!r}")
    row = batch.contacts[0]
    explanation = explain(row, batch.ledger, message, policy, at_us, batch.recent_sends.get(row[0], 0), seen_addresses)
    ids = [event[1] for event in batch.ledger]
    events: dict[int, dict[str, Any]] = {}
    if ids:
        async with engine.connect() as conn:
            table = ConsentEvent.__table__
            for e in (await conn.execute(select(table).where(table.c.id.in_(ids)))).all():
                events[e.id] = {
                    "id": e.id,
                    "action": e.action,
                    "channel": e.channel,
                    "class": e.class_code,
                    "party": e.party,
                    "address": e.address,
                    "method": e.method,
                    "occurred_at": iso_z(e.occurred_at_us),
                    "actor": e.actor,
                    "cause": e.cause,
                    "note": e.note,
                }
    return ExplainResult(tenant_code, external_id, channel, row[5], iso_z(at_us), explanation, events)
