"""What Twilio's delivery status callbacks change, for a batch of them in one transaction.

`undelivered` / `failed` turn the delivery (found by MessageSid, within the tenant) `failed`
with the error, and queue its `delivery.failed` outbound webhook; error 21610 (the recipient
replied STOP to the carrier) is also a `block` of sms on the number, cause
`carrier_unsubscribed`. Every other status (`queued`, `sent`, `delivered`...) changes nothing
and never reaches this module.

Idempotent: only deliveries not already `failed` change, so a replayed callback (Twilio
retrying one it got no answer to, or the same status twice in one batch) records no second
block and queues no second webhook.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.choices import record
from engine.db.models import Delivery
from engine.db.states import DeliveryState
from engine.webhooks.outbox import enqueue_delivery_failed

__all__ = ["BLOCKING_ERRORS", "FAILED_STATUSES", "Match", "StatusReport", "apply_statuses"]

_deliveries = Delivery.__table__
# Twilio error codes that say the number must not be texted again, and the cause recorded.
BLOCKING_ERRORS = {"21610": "carrier_unsubscribed"}
# The statuses that change a delivery; Twilio's others are steps on the way.
FAILED_STATUSES = frozenset({"undelivered", "failed"})
# MessageSids looked up per statement: well under SQLite's 32,766 bound parameters, and a
# batch of callbacks is rarely larger.
_CHUNK = 500


class Match(StrEnum):
    """What a status report found."""

    RECORDED = "recorded"  # the tenant's delivery carries the sid (now failed, or already was)
    OTHER_TENANT = "other_tenant"  # only another tenant's delivery carries it: nothing changes
    UNKNOWN = "unknown"  # no delivery carries it (yet: the sender may not have committed it)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One signed `undelivered` / `failed` callback for a tenant's message."""

    tenant_id: int
    tenant_code: str
    sid: str
    status: str  # lower case, one of FAILED_STATUSES
    error_code: str  # "" when Twilio sent none
    received_at_us: int  # when it arrived (the service's clock): how long it may wait for a match

    @property
    def error(self) -> str:
        return f"twilio {self.status}" + (f" {self.error_code}" if self.error_code else "")


async def apply_statuses(
    conn: AsyncConnection, reports: list[StatusReport], now: int
) -> tuple[list[Match], dict[str, Counter[str]]]:
    """Apply `reports` in order inside the caller's transaction. Returns what each found and
    the ledger events recorded per tenant code and action (for the metrics, once committed)."""
    rows: list[Any] = []  # Row objects
    sids = sorted({report.sid for report in reports})
    for start in range(0, len(sids), _CHUNK):
        rows += (
            await conn.execute(
                select(_deliveries.c.id, _deliveries.c.tenant_id, _deliveries.c.contact_id, _deliveries.c.address,
                       _deliveries.c.state, _deliveries.c.provider_id)
                .where(_deliveries.c.provider_id.in_(sids[start:start + _CHUNK]))
                # In id order, as the senders lock rows: no lock cycle with them on PostgreSQL.
                .order_by(_deliveries.c.id)
                .with_for_update()
            )
        ).all()
    by_sid: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_sid[row.provider_id].append(row)
    state = {row.id: row.state for row in rows}
    changes: list[dict[str, object]] = []
    failed: dict[int, list[int]] = defaultdict(list)
    blocks: dict[tuple[int, str], list[dict[str, object]]] = defaultdict(list)
    matches = []
    for report in reports:
        found = by_sid.get(report.sid, [])
        ours = [row for row in found if row.tenant_id == report.tenant_id]
        if not ours:
            matches.append(Match.OTHER_TENANT if found else Match.UNKNOWN)
            continue
        matches.append(Match.RECORDED)
        # Only deliveries failing now: a replay must not record a second block.
        failing = [row for row in ours if state[row.id] != DeliveryState.FAILED]
        cause = BLOCKING_ERRORS.get(report.error_code)
        for row in failing:
            state[row.id] = DeliveryState.FAILED
            changes.append({"_id": row.id, "_error": report.error})
            failed[report.tenant_id].append(row.id)
            if cause is not None:
                blocks[(report.tenant_id, report.tenant_code)].append({
                    "contact_id": row.contact_id, "action": "block", "channel": "sms", "address": row.address,
                    "method": "status_callback", "occurred_at_us": now, "actor": "twilio", "cause": cause,
                    "note": f"{report.error} (MessageSid {report.sid})",
                })
    if changes:
        await conn.execute(
            update(_deliveries)
            .where(_deliveries.c.id == bindparam("_id"), _deliveries.c.state != DeliveryState.FAILED)
            .values(state=DeliveryState.FAILED, error=bindparam("_error"), updated_at_us=now),
            changes,
        )
    for tenant_id, ids in failed.items():
        await enqueue_delivery_failed(conn, tenant_id, ids, now)
    counts: dict[str, Counter[str]] = {}
    for (tenant_id, code), events in blocks.items():
        counts[code] = await record(conn, tenant_id, events, now)
    return matches, counts
