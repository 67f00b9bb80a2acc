"""Contacts as the API shows them: one with its addresses and current consent, a search
page, a ledger page. Reads only; consent is gating's reading (engine/api/choices.py
`load_choices` → gating.preferences.channel_choices), never re-derived here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, literal_column, or_, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.choices import load_choices
from engine.api.recipients import Recipient
from engine.db.models import ConsentEvent, Contact, ContactPoint
from engine.db.tenants import TenantRecord
from engine.errors import NotFoundError
from engine.webhooks.events import instant

__all__ = ["CONSENT_CHANNELS", "contact_json", "contact_page", "event_json", "find_contact", "ledger_page"]

_contacts = Contact.__table__
_points = ContactPoint.__table__
_events = ConsentEvent.__table__
# The channels a contact has an address for, as campaigns send on them.
CONSENT_CHANNELS = ("email", "sms", "voice")


async def find_contact(conn: AsyncConnection, tenant_id: int, external_id: str) -> Any:
    """The contact row of the tenant, or NotFoundError (another tenant's is not found either)."""
    row = (
        await conn.execute(
            select(_contacts).where(_contacts.c.tenant_id == tenant_id, _contacts.c.external_id == external_id)
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no contact {external_id!r}")
    return row


def _summary(row: Any, points: list[Any]) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "timezone": row.timezone,
        "country": row.country,
        "region": row.region,
        "lead_source": row.lead_source,
        "reviewed_at": instant(row.reviewed_at_us),
        # The contacts.opted_out projection of the latest opt_out / opt_in.
        "marketing_opt_in": not row.opted_out,
        "created_at": instant(row.created_at_us),
        "updated_at": instant(row.updated_at_us),
        "addresses": [{"kind": p.kind, "address": p.address, "valid": p.is_valid} for p in points],
    }


async def _points_of(conn: AsyncConnection, tenant_id: int, contact_ids: list[int]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {cid: [] for cid in contact_ids}
    if contact_ids:
        query = (
            select(_points.c.contact_id, _points.c.kind, _points.c.address, _points.c.is_valid)
            .where(_points.c.tenant_id == tenant_id, _points.c.contact_id.in_(contact_ids))
            .order_by(_points.c.contact_id, _points.c.kind)
        )
        for point in await conn.execute(query):
            found[point.contact_id].append(point)
    return found


async def contact_json(conn: AsyncConnection, tenant: TenantRecord, external_id: str, now_us: int) -> dict[str, Any]:
    """The contact, its addresses, and the consent of each channel x class x party now."""
    row = await find_contact(conn, tenant.id, external_id)
    points = (await _points_of(conn, tenant.id, [row.id]))[row.id]
    recipient = Recipient(tenant, row.id, row.external_id, row.first_name, "email", None, None)
    choices = await load_choices(conn, recipient, now_us, CONSENT_CHANNELS)
    consent = [
        {
            "channel": choice.channel, "class": choice.class_code, "party": choice.party,
            "mode": choice.mode.value, "consented": choice.consented, "revoked": choice.revoked,
            "event_id": choice.event_id,
        }
        for choice in choices
    ]
    return {**_summary(row, points), "consent": consent}


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _full_name() -> Any:
    """"first last", lowercased: spelled with literal constants (not bound parameters) so
    PostgreSQL matches it to the expression index of migration 0012."""
    blank: Any = literal_column("''")
    space: Any = literal_column("' '")
    return func.lower(func.coalesce(_contacts.c.first_name, blank).op("||")(space).op("||")(
        func.coalesce(_contacts.c.last_name, blank)))


# How many contacts (in id order after the cursor) the first look reads: a common
# fragment ("ann", "smith") fills a page within them, cheaper than reading every match
# through the search indexes and sorting; a rarer one falls through to those indexes.
PROBE_ROWS = 2000


def _matchers(tenant_id: int, q: str) -> list[tuple[Any, Any]]:
    """Each way `q` matches: (the condition on a contacts row, the query of the ids it
    matches through its index, from `after` on, as a function of (after, limit))."""
    prefix = _like(q.lower()) + "%"
    matchers: list[tuple[Any, Any]] = []

    def on_contacts(condition: Any) -> None:
        matchers.append((condition, lambda after, limit: (
            select(_contacts.c.id.label("id"))
            .where(_contacts.c.tenant_id == tenant_id, _contacts.c.id > after, condition)
            .order_by(_contacts.c.id + 0).limit(limit).subquery()
        )))

    def on_points(*conditions: Any) -> None:
        matchers.append((
            exists().where(_points.c.tenant_id == tenant_id, _points.c.contact_id == _contacts.c.id, *conditions),
            lambda after, limit: (
                select(_points.c.contact_id.label("id"))
                .where(_points.c.tenant_id == tenant_id, _points.c.contact_id > after, *conditions)
                .order_by(_points.c.contact_id + 0).limit(limit).subquery()
            ),
        ))

    on_contacts(_contacts.c.external_id == q)
    # A first name beginning with the fragment is a "first last" beginning with it: the
    # full-name condition finds those too (migration 0015).
    on_contacts(func.lower(_contacts.c.last_name).like(prefix, escape="\\"))
    on_contacts(_full_name().like(prefix, escape="\\"))
    on_points(_points.c.kind == "email", func.lower(_points.c.address).like(prefix, escape="\\"))
    digits = "".join(ch for ch in q if ch.isdigit())
    # Three digits at least: fewer would match most of an address book.
    if len(digits) >= 3 and len(digits) * 2 >= len(q.replace(" ", "")):
        on_points(_points.c.kind == "phone", _points.c.address.like("%" + digits + "%"))
    return matchers


async def contact_page(
    conn: AsyncConnection, tenant_id: int, q: str, limit: int, after: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """Contacts matching `q` as an address book does (external_id exactly; first name,
    last name, "first last", email by prefix, case-insensitively; phone by its digits),
    in id order after the cursor `after`; returns the page and the next cursor.

    Two ways to the same page (docs/desk.md, "Address book"). First, the next PROBE_ROWS
    contacts in id order are tested against every condition: a common fragment fills the
    page there. Otherwise each way of matching is its own query through its own index (on
    PostgreSQL, migration 0012's), cut to the page's size, and the page is the first
    `limit` ids of their union; one OR with EXISTS would read the whole address book for a
    rare match. Each part sorts by `id + 0`: ordering by the bare id invites the planner to
    walk the id index and filter, which reads every row when few match (an exact email:
    1.7 s over a million contacts)."""
    after = after or 0
    q = q.strip()
    if q:
        matchers = _matchers(tenant_id, q)
        window = (
            select(_contacts.c.id).where(_contacts.c.tenant_id == tenant_id, _contacts.c.id > after)
            .order_by(_contacts.c.id).limit(PROBE_ROWS).subquery()
        )
        probe = (
            select(_contacts.c.id)
            .where(_contacts.c.id.in_(select(window.c.id)), or_(*(condition for condition, _ in matchers)))
            .order_by(_contacts.c.id).limit(limit)
        )
        found = list((await conn.execute(probe)).scalars())
        if len(found) < limit:
            # The window held fewer than a page: unless it was the rest of the book, ask the indexes.
            parts = [part(after, limit) for _, part in matchers]
            matching = union(*(select(part.c.id) for part in parts)).subquery()
            found = list((await conn.execute(select(matching.c.id).order_by(matching.c.id).limit(limit))).scalars())
        query = select(_contacts).where(_contacts.c.tenant_id == tenant_id, _contacts.c.id.in_(found))
    else:
        query = select(_contacts).where(_contacts.c.tenant_id == tenant_id, _contacts.c.id > after)
    rows = (await conn.execute(query.order_by(_contacts.c.id).limit(limit))).all()
    points = await _points_of(conn, tenant_id, [row.id for row in rows])
    next_after = rows[-1].id if len(rows) == limit else None
    return [_summary(row, points[row.id]) for row in rows], next_after


def event_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "channel": row.channel,
        "class": row.class_code,
        "party": row.party,
        "address": row.address,
        "method": row.method,
        "occurred_at": instant(row.occurred_at_us),
        "recorded_at": instant(row.recorded_at_us),
        "actor": row.actor,
        "basis": row.basis,
        "note": row.note,
        "cause": row.cause,
        "wording_id": row.wording_id,
        "wording_version": row.wording_version,
    }


async def ledger_page(
    conn: AsyncConnection, tenant_id: int, contact_id: int, limit: int, before: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """The contact's ledger, newest recorded first, before the cursor `before` (an event id)."""
    query = select(_events).where(and_(_events.c.tenant_id == tenant_id, _events.c.contact_id == contact_id))
    if before is not None:
        query = query.where(_events.c.id < before)
    rows = (await conn.execute(query.order_by(_events.c.id.desc()).limit(limit))).all()
    next_before = rows[-1].id if len(rows) == limit else None
    return [event_json(row) for row in rows], next_before
