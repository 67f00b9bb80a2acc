"""Claiming due outbox rows and writing back what their POST came to.

The house pattern of engine/send/claims.py, for webhooks: a row is POSTed only by the
dispatcher that claimed it, with a conditional UPDATE that sets a claim token and an
expiry (`claim_until_us`) on rows that are pending, due, and not under a live claim. The
database lets one dispatcher win each row, so any number of dispatchers (`serve` on several
hosts, `consentry webhooks dispatch`) can run against one database and no attempt is made
twice at once. Results are written only where the row still carries our token.

A dispatcher that dies or freezes leaves its rows claimed: once the claim lapses they are
due again and another dispatcher (or the same one restarted) POSTs them. That attempt
may repeat one the receiver already got — delivery is at least once, and the repeated
attempt carries the same `webhook-id` for the receiver to de-duplicate.

On PostgreSQL the candidate rows are picked FOR UPDATE SKIP LOCKED, so concurrent
dispatchers take different rows instead of queueing on the same ones; SQLite has one
writer at a time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Tenant, WebhookEndpoint, WebhookMessage
from engine.webhooks.states import MessageState

__all__ = ["Attempt", "Claimed", "claim_ids", "due_ids", "new_token", "record_attempts", "release"]

_messages = WebhookMessage.__table__
_endpoints = WebhookEndpoint.__table__
_tenants = Tenant.__table__


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message this dispatcher holds, with what it needs to POST it."""

    message_id: int
    event_id: str
    payload: str
    attempts: int  # this attempt included
    url: str
    secret: str
    tenant: str
    claim_until_us: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to, as written back: the row's new state and the facts."""

    message_id: int
    state: MessageState
    attempted_at_us: int
    status: int | None
    error: str | None
    next_attempt_at_us: int
    delivered_at_us: int | None


def new_token() -> int:
    """A claim token: random, 62 bits, so two claims never share one."""
    return secrets.randbits(62) | 1


def _due(now_us: int) -> tuple:
    free = or_(_messages.c.claim_until_us.is_(None), _messages.c.claim_until_us < now_us)
    return (_messages.c.state == MessageState.PENDING, _messages.c.next_attempt_at_us <= now_us, free)


async def due_ids(conn: AsyncConnection, now_us: int, limit: int) -> list[int]:
    """Up to `limit` messages due now, oldest due first. On PostgreSQL they are locked
    (SKIP LOCKED: concurrent dispatchers pick different rows) until the transaction ends;
    on SQLite this is a plain read, so an idle dispatcher never takes the write lock."""
    candidates = (
        select(_messages.c.id).where(*_due(now_us)).order_by(_messages.c.next_attempt_at_us, _messages.c.id).limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    return list((await conn.execute(candidates)).scalars())


async def claim_ids(conn: AsyncConnection, ids: list[int], token: int, now_us: int, ttl_us: int) -> list[Claimed]:
    """Claim those of `ids` that are still due for `token`, until now + ttl."""
    if not ids:
        return []
    claimed = (
        await conn.execute(
            update(_messages)
            # Due again, checked by the update itself: a row another dispatcher claimed
            # since it was read stays theirs.
            .where(_messages.c.id.in_(ids), *_due(now_us))
            .values(claim_token=token, claim_until_us=now_us + ttl_us, attempts=_messages.c.attempts + 1)
            .returning(_messages.c.id, _messages.c.endpoint_id, _messages.c.event_id, _messages.c.payload,
                       _messages.c.attempts, _messages.c.tenant_id)
        )
    ).all()
    if not claimed:
        return []
    endpoint_ids = sorted({row.endpoint_id for row in claimed})
    targets = {
        row.id: (row.url, row.secret, row.code)
        for row in await conn.execute(
            select(_endpoints.c.id, _endpoints.c.url, _endpoints.c.secret, _tenants.c.code)
            .join(_tenants, _tenants.c.id == _endpoints.c.tenant_id)
            .where(_endpoints.c.id.in_(endpoint_ids))
        )
    }
    return sorted(
        (Claimed(row.id, row.event_id, row.payload, row.attempts, *targets[row.endpoint_id], now_us + ttl_us) for row in claimed),
        key=lambda message: message.message_id,
    )


_RECORD = (
    update(_messages)
    .where(_messages.c.id == bindparam("_id"), _messages.c.claim_token == bindparam("_token"))
    .values(
        state=bindparam("state"), last_attempt_at_us=bindparam("attempted_at_us"), last_status=bindparam("status"),
        last_error=bindparam("error"), next_attempt_at_us=bindparam("next_attempt_at_us"),
        delivered_at_us=bindparam("delivered_at_us"), claim_token=None, claim_until_us=None,
    )
)


async def record_attempts(conn: AsyncConnection, token: int, attempts: list[Attempt]) -> None:
    """Write attempts back where the rows still carry `token` (in id order: concurrent
    writers then lock rows in one order)."""
    if not attempts:
        return
    await conn.execute(_RECORD, [
        {"_id": a.message_id, "_token": token, "state": a.state.value, "attempted_at_us": a.attempted_at_us,
         "status": a.status, "error": a.error, "next_attempt_at_us": a.next_attempt_at_us,
         "delivered_at_us": a.delivered_at_us}
        for a in sorted(attempts, key=lambda a: a.message_id)
    ])


async def release(conn: AsyncConnection, token: int, message_ids: list[int]) -> None:
    """Hand back messages we claimed but did not POST (our claim got too old to trust):
    due again at once, the attempt not counted."""
    if message_ids:
        await conn.execute(
            update(_messages)
            .where(_messages.c.id.in_(sorted(message_ids)), _messages.c.claim_token == token)
            .values(claim_token=None, claim_until_us=None, attempts=_messages.c.attempts - 1)
        )
