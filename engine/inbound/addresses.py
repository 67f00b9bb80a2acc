"""Which addresses the listener accepts mail for, and for which tenants.

Per tenant: with `senders`, its `return_path` and `unsubscribe` addresses; without, the
addresses the send pipeline derives from the sender domains of its email campaigns
(`bounces@` and `unsubscribe@` each domain, engine/send/identities.py). A recipient is
known when its base address (the part before any `+tag`) is one of these; anything else is
refused at RCPT (550), so the listener is no open relay and no catch-all.

The book is read from the database at most every `REFRESH_S` seconds (a tenant apply
takes effect within that), and again on a miss once it is `RETRY_S` old.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.db.models import Campaign, Tenant
from engine.db.tenants import load_tenant
from engine.render import split_tagged

__all__ = ["AddressBook", "InboundAddress", "Role"]

REFRESH_S = 30.0
RETRY_S = 2.0
_US = 1_000_000


class Role(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    RETURN_PATH = "return_path"


@dataclass(frozen=True, slots=True)
class InboundAddress:
    """A recognised recipient: what it is for, which tenants use it, its tag."""

    address: str
    role: Role
    tenant_ids: tuple[int, ...]
    tag: str | None


class AddressBook:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._book: dict[str, tuple[Role, tuple[int, ...]]] = {}
        self._codes: dict[int, str] = {}
        self._loaded_at: int | None = None

    def tenant_code(self, tenant_id: int) -> str | None:
        return self._codes.get(tenant_id)

    async def lookup(self, address: str) -> InboundAddress | None:
        """The recipient as the listener knows it, or None (refuse it)."""
        base, tag = split_tagged(address)
        now = self.clock()
        if self._loaded_at is None or now - self._loaded_at > REFRESH_S * _US:
            await self.reload()
        entry = self._book.get(base)
        if entry is None and self._loaded_at is not None and now - self._loaded_at > RETRY_S * _US:
            await self.reload()
            entry = self._book.get(base)
        if entry is None:
            return None
        return InboundAddress(base, entry[0], entry[1], tag)

    async def reload(self) -> None:
        book: dict[str, tuple[Role, set[int]]] = {}

        def add(address: str, role: Role, tenant_id: int) -> None:
            known = book.setdefault(address.lower(), (role, set()))
            if known[0] == role:  # an address configured as both keeps its first role
                known[1].add(tenant_id)

        async with self.engine.connect() as conn:
            tenants = (await conn.execute(select(Tenant.id, Tenant.code))).all()
            codes = {tenant_id: code for tenant_id, code in tenants}
            campaigns = Campaign.__table__
            rows = await conn.execute(
                select(campaigns.c.tenant_id, campaigns.c.definition_json).where(campaigns.c.channel == "email")
            )
            domains: dict[int, set[str]] = {}
            for tenant_id, definition in rows:
                sender = (json.loads(definition).get("sender") or {}).get("email")
                if sender:
                    domains.setdefault(tenant_id, set()).add(sender.rpartition("@")[2].lower())
            for tenant_id, code in codes.items():
                senders = (await load_tenant(conn, code)).settings.senders
                if senders is not None:
                    add(senders.inbound_return_path, Role.RETURN_PATH, tenant_id)
                    add(senders.inbound_unsubscribe, Role.UNSUBSCRIBE, tenant_id)
            # Derived addresses too, for every tenant: a campaign launched before its tenant
            # had `senders` keeps sending (and getting bounces) as its snapshot says.
            for tenant_id, tenant_domains in domains.items():
                for domain in sorted(tenant_domains):
                    add(f"bounces@{domain}", Role.RETURN_PATH, tenant_id)
                    add(f"unsubscribe@{domain}", Role.UNSUBSCRIBE, tenant_id)
        self._book = {address: (role, tuple(sorted(ids))) for address, (role, ids) in book.items()}
        self._codes = codes
        self._loaded_at = self.clock()
