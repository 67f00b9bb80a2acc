"""A recipient's own choices: read them through gating, record changes.

The unsubscribe link and the preference centre show and change `grant` / `revoke` events
of one contact. They never read the ledger themselves: `load_choices` loads the contact as
each channel's campaign loader sees it (engine/db/batches.py `load_contact`) and asks
`gating.channel_choices`, so a ticked box is exactly "a bulk message of this class, from
this party, on this channel passes the consent rules" (docs/api.md, "Preference centre").

Writers of one contact are serialised (a lock on the contact row in PostgreSQL, and one per
contact in this process for SQLite, whose writers already queue on the file), so a person's
click and a mailbox provider's one-click POST arriving together record one revoke, not two.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable
from contextlib import asynccontextmanager
from functools import partial

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.api.recipients import Recipient
from engine.db.batches import load_contact
from engine.db.models import ConsentWording, Contact
from engine.db.tenants import TenantRecord
from engine.imports import record_events
from gating import CompiledPolicy, Message, TenantPolicy, compile_policy
from gating.preferences import Choice, channel_choices, fully_revoked, review_due

__all__ = [
    "load_choices",
    "load_review_due",
    "locked_recipient",
    "record",
    "remember_wording",
    "unsubscribe_everything",
]

_contacts = Contact.__table__
_wordings = ConsentWording.__table__
_locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = weakref.WeakValueDictionary()


async def load_choices(
    conn: AsyncConnection, recipient: Recipient, now_us: int, channels: Iterable[str]
) -> list[Choice]:
    """Every choosable class x party on each of `channels`, as gating reads the ledger."""
    channels = tuple(channels)
    loaded = await load_contact(conn, recipient.tenant.id, recipient.contact_id, channels, now_us)
    if loaded is None:
        return []
    rows, ledger = loaded
    choices: list[Choice] = []
    for channel in channels:
        choices += channel_choices(recipient.tenant.policy, channel, rows[channel], ledger, now_us,
                                   compiler=partial(_compiled, recipient.tenant))
    return choices


async def load_review_due(conn: AsyncConnection, recipient: Recipient, now_us: int) -> int | None:
    """When the contact's preferences are next due for review, as gating reads the contact
    record and the ledger (gating.preferences.review_due); None when nothing to review or
    no such contact."""
    loaded = await load_contact(conn, recipient.tenant.id, recipient.contact_id, ("email",), now_us)
    if loaded is None:
        return None
    rows, ledger = loaded
    return review_due(recipient.tenant.policy, rows["email"], ledger, now_us)


# Compiled policies by (policy content, message): compiling depends on nothing else, so an
# entry is never stale, whichever tenant, version or database asks. Bounded, oldest
# dropped first.
_COMPILED: OrderedDict[tuple[str, Message], CompiledPolicy] = OrderedDict()
_COMPILED_MAX = 4096


def _compiled(tenant: TenantRecord, policy: TenantPolicy, message: Message) -> CompiledPolicy:
    key = (tenant.fingerprint, message)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = compile_policy(policy, message)
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return compiled


async def remember_wording(conn: AsyncConnection, tenant_id: int, wording_id: str, text: str, now_us: int) -> str:
    """Keep `text` as a version of `wording_id` (once) and return that version."""
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(
        dialect.insert(_wordings)
        .values(tenant_id=tenant_id, wording_id=wording_id, version=version, text=text, first_shown_at_us=now_us)
        .on_conflict_do_nothing(index_elements=["tenant_id", "wording_id", "version"])
    )
    return version


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
    unsubscribed from everything (then nothing: None; gating's `fully_revoked` decides). The one-click POST (method
    `email_link`) and a mail to the unsubscribe address (`mailto`, engine/inbound) share it.
    Returns the counts per action recorded, for the metrics once committed."""
    async with locked_recipient(engine, recipient) as conn:
        if fully_revoked(await load_choices(conn, recipient, now_us, [recipient.channel])):
            return None
        event = {
            "contact_id": recipient.contact_id, "action": "revoke", "channel": recipient.channel, "class_code": "*",
            "party": "*", "address": recipient.address, "method": method, "occurred_at_us": now_us,
            "actor": "recipient", "note": note,
        }
        return await record(conn, recipient.tenant.id, [event], now_us)
