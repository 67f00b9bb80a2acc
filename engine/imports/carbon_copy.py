"""Carbon-copy sync: a consent change recorded on a contact is recorded on its linked ones.

Seed 004 (a service location and its billing account, a household): the preferences are
kept on each record, and a change on one is copied onto the other. The rules
(docs/imports.md, "Linked contacts"):

- direct links only: a copy is never copied again (it carries `linked_from`, the source's
  external_id), so a chain A–B–C copies A's change to B, not on to C, and a cycle of links
  cannot loop;
- consent changes only (grant, revoke, block, unblock, opt_out, opt_in); a `review` is
  about the conversation with one person and stays on that person;
- an event naming an address is copied only onto a linked contact whose current email or
  phone is that address: one person's unsubscribe must not silence another person's
  different address in the household; an event without an address (the contact on a
  channel, or the contact-level tick box) is copied onto every linked contact;
- a copy that the batch already records as an original (a STOP to a number two linked
  contacts share reaches both) is not recorded twice;
- links never cross tenants: each tenant's links are looked up with its own id.

Runs inside record_event_rows, in the caller's transaction: the copies are inserted,
projected and sent to the webhook outbox with the originals, or not at all. One query per
tenant in the batch finds the links (after a one-row probe that ends it for a tenant
without any).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Contact, ContactLink, ContactPoint
from engine.imports.statements import EVENT_FIELDS

__all__ = ["COPIED_ACTIONS", "with_carbon_copies"]

COPIED_ACTIONS = frozenset({"grant", "revoke", "block", "unblock", "opt_out", "opt_in"})

_links = ContactLink.__table__
_contacts = Contact.__table__
_points = ContactPoint.__table__

_TENANT = EVENT_FIELDS.index("tenant_id")
_CONTACT = EVENT_FIELDS.index("contact_id")
_ACTION = EVENT_FIELDS.index("action")
_ADDRESS = EVENT_FIELDS.index("address")
_LINKED_FROM = EVENT_FIELDS.index("linked_from")
# What makes two ledger rows the same change of one contact (everything but who/how).
_SAME = tuple(EVENT_FIELDS.index(name) for name in
              ("contact_id", "action", "channel", "class_code", "party", "address", "occurred_at_us"))


def _copyable(row: tuple) -> bool:
    return row[_LINKED_FROM] is None and row[_ACTION] in COPIED_ACTIONS


async def with_carbon_copies(conn: AsyncConnection, rows: Sequence[tuple]) -> Sequence[tuple]:
    """`rows` (EVENT_FIELDS order) with each event's copies onto linked contacts right
    after it; `rows` itself when nothing is linked."""
    # A tenant that links nobody (most) pays one probe of the unique index and no pass
    # over the rows (docs/imports.md, "Linked contacts": 4,000 events, SQLite).
    tenants = [tenant_id for tenant_id in sorted({row[_TENANT] for row in rows}) if await _has_links(conn, tenant_id)]
    if not tenants:
        return rows
    contacts_by_tenant: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        if row[_TENANT] in tenants and _copyable(row):
            contacts_by_tenant[row[_TENANT]].add(row[_CONTACT])
    links: dict[tuple[int, int], list[tuple[int, str, frozenset[str]]]] = {}
    for tenant_id, contact_ids in contacts_by_tenant.items():
        for source, target, (external_id, addresses) in await _linked(conn, tenant_id, sorted(contact_ids)):
            links.setdefault((tenant_id, source), []).append((target, external_id, addresses))
    if not links:
        return rows

    seen = {tuple(row[i] for i in _SAME) for row in rows}
    result: list[tuple] = []
    for row in rows:
        result.append(row)
        if not _copyable(row):
            continue
        for target, source_external_id, addresses in links.get((row[_TENANT], row[_CONTACT]), ()):
            if row[_ADDRESS] is not None and row[_ADDRESS] not in addresses:
                continue
            copy = list(row)
            copy[_CONTACT] = target
            copy[_LINKED_FROM] = source_external_id
            key = tuple(copy[i] for i in _SAME)
            if key in seen:
                continue
            seen.add(key)
            result.append(tuple(copy))
    return result


async def _has_links(conn: AsyncConnection, tenant_id: int) -> bool:
    probe = select(_links.c.id).where(_links.c.tenant_id == tenant_id).limit(1)
    return (await conn.execute(probe)).first() is not None


async def _linked(
    conn: AsyncConnection, tenant_id: int, contact_ids: list[int]
) -> list[tuple[int, int, tuple[str, frozenset[str]]]]:
    """`(source, target, (source external_id, target's current addresses))` for each link
    of the tenant touching one of `contact_ids`, in one query."""
    clause_a, clause_b, ids = _id_clauses(conn)
    pairs = union_all(
        select(_links.c.contact_a.label("source"), _links.c.contact_b.label("target"))
        .where(_links.c.tenant_id == tenant_id, clause_a),
        select(_links.c.contact_b.label("source"), _links.c.contact_a.label("target"))
        .where(_links.c.tenant_id == tenant_id, clause_b),
    ).subquery()
    query = (
        select(pairs.c.source, pairs.c.target, _contacts.c.external_id, _points.c.address)
        .join(_contacts, (_contacts.c.tenant_id == tenant_id) & (_contacts.c.id == pairs.c.source))
        .outerjoin(_points, (_points.c.tenant_id == tenant_id) & (_points.c.contact_id == pairs.c.target))
        .order_by(pairs.c.source, pairs.c.target)
    )
    found: dict[tuple[int, int], tuple[str, set[str]]] = {}
    for source, target, external_id, address in await conn.execute(query, {"ids": ids(contact_ids)}):
        _external_id, addresses = found.setdefault((source, target), (external_id, set()))
        if address is not None:
            addresses.add(address)
    return [(source, target, (external_id, frozenset(addresses)))
            for (source, target), (external_id, addresses) in found.items()]


def _id_clauses(conn: AsyncConnection):
    # One bound parameter for any number of ids (a JSON array on SQLite, a bigint[] on
    # PostgreSQL), as statements.contacts_by_external_id does: an import chunk has thousands.
    if conn.dialect.name == "postgresql":
        param = bindparam("ids", type_=ARRAY(BigInteger))
        return _links.c.contact_a == any_(param), _links.c.contact_b == any_(param), list

    def values() -> Select[Any]:
        return select(literal_column("value")).select_from(func.json_each(bindparam("ids")))

    return _links.c.contact_a.in_(values()), _links.c.contact_b.in_(values()), json.dumps
