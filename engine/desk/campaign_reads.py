"""What the campaign pages read: a tenant's campaigns a page at a time, their progress, and
one campaign's recipients a page at a time.

Every read is scoped by `tenant_id` first (the session's, never the URL's) and walks an
index: campaigns newest first by id; recipients in audience order (contact id) on the
deliveries' unique key, or on (campaign, reason, contact) when filtered (migration 0011), so
a page costs the same on the first page of a million-recipient campaign as on its last. Counts are one GROUP BY over the campaign's index entries.
Nothing here interprets consent: decisions and reasons are read as the runner recorded them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Campaign, Contact, Delivery
from engine.db.states import DeliveryState
from gating import DecisionKind

__all__ = [
    "CampaignRow", "Progress", "RecipientRow", "campaigns_page", "progress_by_campaign", "progress_of", "recipient",
    "recipients_page", "sent_before",
]

_c = Campaign.__table__
_d = Delivery.__table__
_contacts = Contact.__table__


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: int
    code: str
    status: str
    channel: str
    kind: str
    class_code: str
    created_at_us: int
    updated_at_us: int


@dataclass(frozen=True, slots=True)
class Progress:
    """A campaign's recipients by where they stand; `pending` counts rows not yet final
    (pending, and sending: in the runner's hands)."""

    total: int = 0
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    deferred: int = 0
    pending: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.suppressed + self.failed

    @property
    def percent(self) -> int:
        return (100 * self.done) // self.total if self.total else 0


def progress_of(states: dict[str, int]) -> Progress:
    """From rows per delivery state (as `campaign status` counts them)."""
    return Progress(
        total=sum(states.values()),
        sent=states.get(DeliveryState.SENT, 0),
        suppressed=states.get(DeliveryState.SUPPRESSED, 0),
        failed=states.get(DeliveryState.FAILED, 0),
        deferred=states.get(DeliveryState.DEFERRED, 0),
        pending=states.get(DeliveryState.PENDING, 0) + states.get(DeliveryState.SENDING, 0),
    )


async def campaigns_page(
    conn: AsyncConnection, tenant_id: int, before_id: int | None, limit: int
) -> tuple[list[CampaignRow], int | None]:
    """Up to `limit` campaigns newest first, older than `before_id`; and the cursor of the
    next page (None on the last)."""
    query = (
        select(_c.c.id, _c.c.code, _c.c.status, _c.c.channel, _c.c.kind, _c.c.class_code, _c.c.created_at_us,
               _c.c.updated_at_us)
        .where(_c.c.tenant_id == tenant_id)
        .order_by(_c.c.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        query = query.where(_c.c.id < before_id)
    rows = [CampaignRow(*row) for row in (await conn.execute(query)).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


async def progress_by_campaign(conn: AsyncConnection, tenant_id: int, campaign_ids: Sequence[int]) -> dict[int, Progress]:
    """Each campaign's progress, in one GROUP BY over the (tenant, campaign, state) index."""
    if not campaign_ids:
        return {}
    rows = await conn.execute(
        select(_d.c.campaign_id, _d.c.state, func.count())
        .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id.in_(list(campaign_ids)))
        .group_by(_d.c.campaign_id, _d.c.state)
    )
    states: dict[int, dict[str, int]] = {}
    for campaign_id, state, n in rows:
        states.setdefault(campaign_id, {})[state] = n
    return {campaign_id: progress_of(by_state) for campaign_id, by_state in states.items()}


@dataclass(frozen=True, slots=True)
class RecipientRow:
    id: int
    contact_id: int
    external_id: str
    first_name: str | None
    last_name: str | None
    address: str | None
    decision: str
    reason: str | None
    state: str
    purpose: str
    defer_until_us: int | None
    sent_at_us: int | None
    updated_at_us: int

    @property
    def is_suppressed(self) -> bool:
        return self.decision == DecisionKind.SUPPRESS


def _recipient_query():  # noqa: ANN202
    return (
        select(_d.c.id, _d.c.contact_id, _contacts.c.external_id, _contacts.c.first_name, _contacts.c.last_name, _d.c.address,
               _d.c.decision, _d.c.reason, _d.c.state, _d.c.purpose, _d.c.defer_until_us, _d.c.sent_at_us,
               _d.c.updated_at_us)
        .join(_contacts, _contacts.c.id == _d.c.contact_id)
    )


async def recipients_page(
    conn: AsyncConnection, tenant_id: int, campaign_id: int, reason: str | None, after: int | None, limit: int
) -> tuple[list[RecipientRow], int | None]:
    """Up to `limit` recipients in audience order (contact id; a campaign has one row per
    contact) after contact id `after`, only those with `reason` when given; and the cursor
    of the next page (None on the last)."""
    query = (
        _recipient_query()
        .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id)
        .order_by(_d.c.contact_id)
        .limit(limit + 1)
    )
    if reason is not None:
        query = query.where(_d.c.reason == reason)
    if after is not None:
        query = query.where(_d.c.contact_id > after)
    rows = [RecipientRow(*row) for row in (await conn.execute(query)).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].contact_id if more else None)


async def recipient(conn: AsyncConnection, tenant_id: int, campaign_id: int, external_id: str) -> RecipientRow | None:
    """The campaign's row for one contact (a campaign has one channel: at most one row)."""
    row = (await conn.execute(
        _recipient_query().where(_d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id,
                                 _contacts.c.tenant_id == tenant_id, _contacts.c.external_id == external_id)
        .limit(1)
    )).first()
    return None if row is None else RecipientRow(*row)


async def sent_before(conn: AsyncConnection, tenant_id: int, campaign_id: int, row: RecipientRow) -> set[str]:
    """The row's address, if a recipient before it in audience order was given the send at
    it: the data rule 5 (duplicate_address) needs to explain this recipient as the runner
    decided it. Gating, not this function, says what it means."""
    if not row.address:
        return set()
    earlier = (await conn.execute(
        select(_d.c.id).where(
            _d.c.tenant_id == tenant_id, _d.c.campaign_id == campaign_id, _d.c.address == row.address,
            _d.c.decision == DecisionKind.SEND, _d.c.contact_id < row.contact_id,
        ).limit(1)
    )).first()
    return {row.address} if earlier is not None else set()
