"""A recipient's own choices on one channel: read them from the ledger, record changes.

The unsubscribe link and the preference centre show and change `grant` / `revoke` events
of one contact on one channel, at the address the link was sent to (DESIGN.md 1: "at
contact level, or for one address"). Reading follows the ledger rule of DESIGN.md 2 for
those two actions: for a (channel, class, party) the most recent covering event wins,
address-level and contact-level alike, `*` covering every value, events dated after `now`
not yet in force. Blocks and the contact-wide opt-out are other layers and are not shown
here: a page that showed "unsubscribed" after a hard bounce would not round-trip.

Writers of one contact are serialised (a lock on the contact row in PostgreSQL, and one per
contact in this process for SQLite, whose writers already queue on the file), so a person's
click and a mailbox provider's one-click POST arriving together record one revoke, not two.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.api.recipients import Recipient
from engine.db.models import ConsentEvent, Contact
from engine.imports import record_events

__all__ = [
    "ChoiceEvent",
    "choosable_classes",
    "class_states",
    "is_unsubscribed",
    "load_choices",
    "locked_recipient",
    "record",
    "unsubscribe_everything",
]

_events = ConsentEvent.__table__
_contacts = Contact.__table__
_locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = weakref.WeakValueDictionary()


@dataclass(frozen=True, slots=True)
class ChoiceEvent:
    action: str  # grant | revoke
    class_code: str
    party: str


def _covers(value: str | None, wanted: str) -> bool:
    return value in (None, "*", wanted)


def choosable_classes(policy: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(class, mode) of every class a recipient can choose: exempt ones need no consent."""
    regime = policy.get("regime", "opt_out")
    chosen = []
    for code, spec in policy["classes"].items():
        mode = (spec or {}).get("mode") or regime
        if mode != "exempt":
            chosen.append((code, mode))
    return chosen


async def load_choices(conn: AsyncConnection, recipient: Recipient, now_us: int) -> list[ChoiceEvent]:
    """The contact's grant/revoke events on the link's channel, oldest first."""
    where_address: ColumnElement[bool] = _events.c.address.is_(None)
    if recipient.address is not None:
        where_address = or_(where_address, _events.c.address == recipient.address)
    rows = await conn.execute(
        select(_events.c.action, _events.c.class_code, _events.c.party)
        .where(
            _events.c.tenant_id == recipient.tenant.id,
            _events.c.contact_id == recipient.contact_id,
            _events.c.action.in_(("grant", "revoke")),
            _events.c.channel.in_((recipient.channel, "*")),
            _events.c.occurred_at_us <= now_us,
            where_address,
        )
        .order_by(_events.c.occurred_at_us, _events.c.id)
    )
    return [ChoiceEvent(r.action, r.class_code or "*", r.party or "*") for r in rows]


def class_states(events: Iterable[ChoiceEvent], classes: Iterable[tuple[str, str]], party: str = "first") -> dict[str, bool]:
    """class → subscribed, for first-party messages: the latest covering event decides;
    with none, an `opt_out` class is subscribed and an `opt_in` class is not."""
    states = {code: mode == "opt_out" for code, mode in classes}
    for event in events:
        if not _covers(event.party, party):
            continue
        for code in states:
            if _covers(event.class_code, code):
                states[code] = event.action == "grant"
    return states


def is_unsubscribed(events: Iterable[ChoiceEvent]) -> bool:
    """True when a revoke of everything (class `*`, party `*`) has not been followed by
    any grant: a further unsubscribe would change nothing."""
    unsubscribed = False
    for event in events:
        if event.action == "revoke" and event.class_code == "*" and event.party == "*":
            unsubscribed = True
        elif event.action == "grant":
            unsubscribed = False
    return unsubscribed


@asynccontextmanager
async def locked_recipient(engine: AsyncEngine, recipient: Recipient):  # noqa: ANN201
    """A transaction in which no other writer changes this contact's choices."""
    key = (recipient.tenant.id, recipient.contact_id)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    async with lock, engine.begin() as conn:
        # FOR UPDATE is a no-op on SQLite, where the lock above does the work.
        await conn.execute(
            select(_contacts.c.id)
            .where(_contacts.c.tenant_id == recipient.tenant.id, _contacts.c.id == recipient.contact_id)
            .with_for_update()
        )
        yield conn


async def record(conn: AsyncConnection, tenant_id: int, events: list[dict[str, object]], recorded_at_us: int) -> Counter[str]:
    """Append events to the ledger (engine.imports.record_events, inside the caller's
    transaction); returns the count per action, for the metrics once committed."""
    if events:
        await record_events(conn, tenant_id, events, recorded_at_us=recorded_at_us)
    return Counter(str(event["action"]) for event in events)


async def unsubscribe_everything(
    engine: AsyncEngine, recipient: Recipient, now_us: int, *, method: str, note: str
) -> Counter[str] | None:
    """What "unsubscribe" records (docs/api.md): one `revoke` of the recipient's channel,
    class `*`, party `*`, on the address, actor `recipient` — unless the address is already
    unsubscribed from everything (then nothing: None). The one-click POST (method
    `email_link`) and a mail to the unsubscribe address (`mailto`, engine/inbound) share it.
    Returns the counts per action recorded, for the metrics once committed."""
    async with locked_recipient(engine, recipient) as conn:
        if is_unsubscribed(await load_choices(conn, recipient, now_us)):
            return None
        event = {
            "contact_id": recipient.contact_id, "action": "revoke", "channel": recipient.channel, "class_code": "*",
            "party": "*", "address": recipient.address, "method": method, "occurred_at_us": now_us,
            "actor": "recipient", "note": note,
        }
        return await record(conn, recipient.tenant.id, [event], now_us)
