"""Recording consent events: the one way into the append-only ledger.

The consent import, the contacts import (`opted_out=true`) and the send pipeline
(webhooks: STOP / START keywords, hard bounces, spam complaints, carrier errors) all record
events here, so the projections on `contacts` move the same way whoever records:

- `opt_out` / `opt_in` set `contacts.opted_out` when the event is not older than the
  instant the flag last changed (`opted_out_changed_at_us`); at equal instants the event
  recorded last wins, the order gating reads the ledger in.

`review` events are not projected onto `contacts.reviewed_at_us`: that column is the
imported fact, and gating reads review events from the ledger as of `--at`, so a replay at
an earlier instant never sees a later review.

Events are only ever inserted: nothing here updates or deletes a ledger row.

On PostgreSQL a large batch (an import's chunk) is appended with COPY and projected with
one statement (engine/imports/staging.py), with the same result as the row-by-row
statements that small batches and SQLite run.

A consent change on a contact that is linked to others (a household, a billing account)
is copied onto them here, in the same transaction (engine/imports/carbon_copy.py).

Consent changes that a tenant's webhook endpoints subscribe to are written to the webhook
outbox in the same transaction (engine/webhooks/outbox.py): one query per batch when no
endpoint wants them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Contact, ContactPoint
from engine.imports.carbon_copy import with_carbon_copies
from engine.imports.staging import copy_events, is_staged, project_opted_out
from engine.imports.statements import EVENT_FIELDS, executemany, prepared
from engine.imports.vocabulary import ACTIONS
from engine.webhooks.outbox import ledger_outbox

__all__ = [
    "contact_ids_for_address",
    "record_event_rows",
    "record_events",
]

_REQUIRED = ("contact_id", "action", "method", "occurred_at_us")
_OPTIONAL = (
    "channel", "class_code", "party", "address", "actor", "basis", "note", "cause", "recorded_at_us",
    "wording_id", "wording_version",
)
_ACTION = EVENT_FIELDS.index("action")
_CONTACT = EVENT_FIELDS.index("contact_id")
_OCCURRED = EVENT_FIELDS.index("occurred_at_us")


async def record_events(
    conn: AsyncConnection,
    tenant_id: int,
    events: Iterable[Mapping[str, object]],
    *,
    recorded_at_us: int,
) -> int:
    """Append events to a tenant's ledger and update the contacts' projections.

    Each event is a mapping with `contact_id`, `action` (one of ACTIONS), `method` and
    `occurred_at_us`, and optionally `channel`, `class_code`, `party`, `address` (spelled as
    `normalize_address` returns it), `actor`, `basis`, `note`, `cause` (for suppressions the
    system records: `hard_bounce`, `spam_complaint`, `carrier_unsubscribed`,
    `invalid_number`, `sms_keyword`...) and `recorded_at_us` (default: the call's `recorded_at_us`, the caller's clock). Runs inside
    the caller's transaction; returns the number of events recorded.
    """
    stamp = recorded_at_us
    rows = [_row(tenant_id, event, stamp) for event in events]
    await _check_contacts(conn, tenant_id, {row[_CONTACT] for row in rows})
    await record_event_rows(conn, rows)
    return len(rows)


async def _check_contacts(conn: AsyncConnection, tenant_id: int, contact_ids: set[int]) -> None:
    """Tenants never mix: every event must be about one of the tenant's own contacts."""
    if not contact_ids:
        return
    contacts = Contact.__table__
    query = select(contacts.c.id).where(contacts.c.tenant_id == tenant_id, contacts.c.id.in_(sorted(contact_ids)))
    found = set((await conn.execute(query)).scalars())
    if found != contact_ids:
        raise ValueError(f"contacts {sorted(contact_ids - found)} are not contacts of tenant {tenant_id}")


def _row(tenant_id: int, event: Mapping[str, object], stamp: int) -> tuple:
    missing = [key for key in _REQUIRED if event.get(key) is None]
    unknown = set(event) - set(_REQUIRED) - set(_OPTIONAL)
    if missing or unknown:
        raise ValueError(f"consent event {dict(event)!r}: missing {missing}, unknown {sorted(unknown)}")
    if event["action"] not in ACTIONS:
        raise ValueError(f"consent event action {event['action']!r} is not one of {ACTIONS}")
    values = {"tenant_id": tenant_id, "recorded_at_us": stamp, **event}
    return tuple(values.get(name) for name in EVENT_FIELDS)


async def record_event_rows(conn: AsyncConnection, rows: Sequence[tuple]) -> None:
    """The bulk form of record_events: complete rows in `EVENT_FIELDS` order, in order.

    Unchecked: the imports pass contact ids they have just looked up in the tenant.
    Copies onto linked contacts are added after each event they copy.
    """
    if not rows:
        return
    rows = await with_carbon_copies(conn, rows)
    outbox = await ledger_outbox(conn, rows)
    if is_staged(conn, rows):
        await copy_events(conn, rows)
    else:
        await executemany(conn, prepared(conn, "insert_events"), rows)
    await _project(conn, rows)
    if outbox is not None:
        await outbox.enqueue(conn)


async def _project(conn: AsyncConnection, rows: Sequence[tuple]) -> None:
    opted = [
        (row[_CONTACT], row[_OCCURRED], row[_ACTION] == "opt_out")
        for row in rows
        if row[_ACTION] in ("opt_out", "opt_in")
    ]
    if is_staged(conn, opted):
        await project_opted_out(conn, opted)
    else:
        await executemany(conn, prepared(conn, "project_opted_out"), opted)


async def contact_ids_for_address(conn: AsyncConnection, tenant_id: int, kind: str, address: str) -> list[int]:
    """The tenant's contacts whose current `kind` point (`email`/`phone`) is this address.

    For webhooks and bounces, which know an address, not a contact: normalise it first
    (`normalize_email`, `normalize_phone`).
    """
    points = ContactPoint.__table__
    query = select(points.c.contact_id).where(
        points.c.tenant_id == tenant_id, points.c.kind == kind, points.c.address == address
    )
    # Sorted here, not by ORDER BY contact_id: given that ORDER BY, SQLite walks the tenant's
    # (tenant_id, contact_id, kind) unique index in order rather than look the address up,
    # reading every contact point of the tenant on each STOP (docs/benchmarks.md).
    return sorted((await conn.execute(query)).scalars())
