"""The deliveries table: the idempotency ledger, the suppression log and the export.

One row per (campaign, contact, channel) under a unique key. A row is written before its
transport is called; a second writer's insert is ignored and it sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Campaign, Delivery
from engine.db.states import (
    HALTED_STATUSES,
    OPEN_STATES,
    CampaignStatus,
    DeliveryState,
    Purpose,
    SendReason,
)
from gating import DecisionKind

_d = Delivery.__table__



@dataclass(frozen=True, slots=True)
class Existing:
    id: int
    state: str
    address: str | None
    purpose: str
    attempts: int
    updated_at_us: int
    claim_until_us: int | None

    def is_held(self, now_us: int) -> bool:
        """`sending` under a claim that has not lapsed: another runner is on it."""
        return self.state == DeliveryState.SENDING and self.claim_until_us is not None and self.claim_until_us >= now_us


async def existing_for(conn: AsyncConnection, tenant_id: int, campaign_id: int, channel: str, contact_ids: Sequence[int]) -> dict[int, Existing]:
    rows = await conn.execute(
        select(_d.c.contact_id, _d.c.id, _d.c.state, _d.c.address, _d.c.purpose, _d.c.attempts, _d.c.updated_at_us,
               _d.c.claim_until_us).where(
            _d.c.tenant_id == tenant_id,
            _d.c.campaign_id == campaign_id,
            _d.c.channel == channel,
            _d.c.contact_id.in_(contact_ids),
        )
    )
    return {row[0]: Existing(*row[1:]) for row in rows}


def _insert_ignore(conn: AsyncConnection, table):  # noqa: ANN001
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def insert_new(conn: AsyncConnection, rows: list[dict]) -> dict[int, int]:
    """Insert delivery rows, ignoring any another writer got to first.

    Returns contact_id -> delivery id for the rows *this* call inserted: only those may be
    sent by this caller.
    """
    if not rows:
        return {}
    # The rows come back keyed by contact, so their order is not needed: asking SQLAlchemy
    # for it (`sort_by_parameter_order`) cannot be batched with ON CONFLICT DO NOTHING and
    # ran one INSERT per row (90 µs of CPU a row on SQLite, against 20 batched).
    result = await conn.execute(
        _insert_ignore(conn, _d).returning(_d.c.contact_id, _d.c.id), rows
    )
    return {contact_id: delivery_id for contact_id, delivery_id in result.all()}


async def update_rows(conn: AsyncConnection, changes: list[dict]) -> None:
    """Executemany UPDATE by id; every dict has the same keys plus `_id`."""
    if not changes:
        return
    keys = [key for key in changes[0] if key != "_id"]
    statement = update(_d).where(_d.c.id == bindparam("_id")).values({key: bindparam(key) for key in keys})
    await conn.execute(statement, changes)


async def update_open_rows(conn: AsyncConnection, changes: list[dict]) -> None:
    """Record gating decisions on rows nobody holds (pending or deferred): a row another
    runner claimed meanwhile keeps its state, and that runner its message."""
    if not changes:
        return
    keys = [key for key in changes[0] if key != "_id"]
    statement = (
        update(_d)
        .where(_d.c.id == bindparam("_id"), or_(*(_d.c.state == state for state in OPEN_STATES)))
        .values({key: bindparam(key) for key in keys})
    )
    await conn.execute(statement, changes)


async def mark_sending(conn: AsyncConnection, ids: Sequence[int], stamp: int) -> None:
    """An individual message's row (no campaign runner ever claims it) is about to go: until
    a result is recorded it is in doubt."""
    if ids:
        await conn.execute(
            update(_d).where(_d.c.id.in_(ids)).values(state=DeliveryState.SENDING, attempts=_d.c.attempts + 1, updated_at_us=stamp)
        )


async def addresses_with(
    conn: AsyncConnection, tenant_id: int, channel: str, addresses: Iterable[str], purpose: str | None = None,
    states: Sequence[str] = (DeliveryState.SENT,), exclude_ids: Sequence[int] = (),
) -> set[str]:
    """Which of these addresses ever had a delivery in `states` (optionally of a purpose),
    not counting the rows `exclude_ids` (those being decided again)."""
    wanted = list({a for a in addresses if a})
    if not wanted:
        return set()
    query = select(_d.c.address).distinct().where(
        _d.c.tenant_id == tenant_id, _d.c.channel == channel, _d.c.address.in_(wanted), _d.c.state.in_(states)
    )
    if purpose is not None:
        query = query.where(_d.c.purpose == purpose)
    if exclude_ids:
        query = query.where(_d.c.id.not_in(list(exclude_ids)))
    return {row[0] for row in await conn.execute(query)}


def block_event(contact_id: int, channel: str, address: str | None, cause: str, note: str, stamp: int,
                method: str = "delivery_failure", actor: str = "consentry") -> dict:
    """A permanent delivery failure as a ledger `block` with its cause (for `record_events`):
    every later campaign and individual message honours it. Bounces and complaints that
    arrive later by mail (engine/inbound) say how they came in `method`."""
    return {
        "contact_id": contact_id, "action": "block", "channel": channel, "address": address,
        "method": method, "occurred_at_us": stamp, "actor": actor, "note": note[:500], "cause": cause,
    }


async def held_elsewhere(conn: AsyncConnection, tenant_id: int, campaign_id: int, now_us: int) -> int:
    """Rows of the campaign under a live claim right now (called once a runner's own claims
    are recorded or released: whoever holds them is another runner)."""
    query = select(func.count()).where(
        _d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id, _d.c.state == DeliveryState.SENDING,
        _d.c.claim_until_us >= now_us,
    )
    return int((await conn.execute(query)).scalar_one())


async def held_in_range(
    conn: AsyncConnection, tenant_id: int, campaign_id: int, id_range: tuple[int, int | None], now_us: int
) -> int | None:
    """When the last live claim on the campaign's rows with contact ids in (after, upto]
    lapses; None when no row there is held."""
    after, upto = id_range
    query = select(func.max(_d.c.claim_until_us)).where(
        _d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id, _d.c.state == DeliveryState.SENDING,
        _d.c.claim_until_us >= now_us, _d.c.contact_id > after,
    )
    if upto is not None:
        query = query.where(_d.c.contact_id <= upto)
    value = (await conn.execute(query)).scalar_one()
    return None if value is None else int(value)


async def open_in_range(conn: AsyncConnection, tenant_id: int, campaign_id: int, id_range: tuple[int, int | None]) -> int:
    """Rows of the campaign with contact ids in (after, upto] that are pending or sending."""
    after, upto = id_range
    query = select(func.count()).where(
        _d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id,
        _d.c.state.in_((DeliveryState.PENDING, DeliveryState.SENDING)), _d.c.contact_id > after,
    )
    if upto is not None:
        query = query.where(_d.c.contact_id <= upto)
    return int((await conn.execute(query)).scalar_one())


async def counts_by_state(conn: AsyncConnection, tenant_id: int, campaign_id: int) -> list[tuple[DeliveryState, Purpose, str, str, int]]:
    """(state, purpose, decision, reason, count) for a campaign."""
    rows = await conn.execute(
        select(_d.c.state, _d.c.purpose, _d.c.decision, func.coalesce(_d.c.reason, ""), func.count())
        .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id)
        .group_by(_d.c.state, _d.c.purpose, _d.c.decision, _d.c.reason)
    )
    return [(DeliveryState(s), Purpose(p), d, r, n) for s, p, d, r, n in rows]


async def counts_by_feedback(conn: AsyncConnection, tenant_id: int, campaign_id: int) -> dict[str, int]:
    """feedback (hard_bounce, soft_bounce, complaint) → rows, for a campaign."""
    rows = await conn.execute(
        select(_d.c.feedback, func.count())
        .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id, _d.c.feedback.is_not(None))
        .group_by(_d.c.feedback)
    )
    return {str(feedback): int(n) for feedback, n in rows}


async def set_campaign_status(conn: AsyncConnection, campaign_id: int, status: CampaignStatus, stamp: int, finished: bool = False) -> bool:
    """A runner's verdict on its campaign; never over an operator's pause or cancel (one
    committed between our read and this write included). True when written."""
    values = {"status": status, "updated_at_us": stamp}
    if finished:
        values["finished_at_us"] = stamp
    table = Campaign.__table__
    result = await conn.execute(
        update(table).where(table.c.id == campaign_id, table.c.status.not_in(list(HALTED_STATUSES))).values(**values)
    )
    return bool(result.rowcount)


async def campaign_status(conn: AsyncConnection, campaign_id: int) -> CampaignStatus:
    table = Campaign.__table__
    return CampaignStatus((await conn.execute(select(table.c.status).where(table.c.id == campaign_id))).scalar_one())


async def start_running(conn: AsyncConnection, campaign_id: int, stamp: int, lift_pause: bool = False) -> None:
    """Mark a campaign running as a runner starts, unless an operator halted it: a pause is
    lifted only when asked (`resume`), a cancel never."""
    table = Campaign.__table__
    kept = [CampaignStatus.CANCELLED] if lift_pause else list(HALTED_STATUSES)
    await conn.execute(
        update(table).where(table.c.id == campaign_id, table.c.status.not_in(kept))
        .values(status=CampaignStatus.RUNNING, updated_at_us=stamp)
    )


async def cancel_open(conn: AsyncConnection, tenant_id: int, campaign_id: int, stamp: int) -> int:
    """A cancelled campaign's rows that nobody holds and that have no outcome yet (pending,
    deferred) become final: suppressed, reason `campaign_cancelled`. Rows a live runner
    holds are released by it within one renewal and swept by its settle."""
    result = await conn.execute(
        update(_d)
        .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id, _d.c.state.in_(OPEN_STATES))
        .values(state=DeliveryState.SUPPRESSED, decision=DecisionKind.SUPPRESS, reason=SendReason.CAMPAIGN_CANCELLED,
                updated_at_us=stamp)
    )
    return result.rowcount or 0
