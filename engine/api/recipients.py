"""Who a signed link names: token → tenant, contact, channel and the address it was sent to.

The token (engine/render/tokens.py) carries ids and a MAC, so a link works without a
session or a cookie and nobody can edit it into someone else's. A token that does not
verify, or names a tenant or contact that is not (or no longer) there, is no recipient: the
caller answers 404 and records nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import Campaign, Contact, ContactPoint, Tenant
from engine.db.tenants import TenantRecord, load_tenant
from engine.imports import KIND_FOR_CHANNEL
from engine.render import verify_token

__all__ = ["Recipient", "mask_address", "recipient_for_token"]


@dataclass(frozen=True, slots=True)
class Recipient:
    tenant: TenantRecord
    contact_id: int
    external_id: str
    first_name: str | None
    channel: str
    # The contact's current address on the channel (None for channels without one, or a
    # contact who has none any more).
    address: str | None
    campaign_code: str | None


async def recipient_for_token(conn: AsyncConnection, secrets: Sequence[bytes], token: str) -> Recipient | None:
    """`secrets`: the current one first, then those retired but still honoured."""
    claims = verify_token(secrets, token)
    if claims is None:
        return None
    tenants, contacts = Tenant.__table__, Contact.__table__
    code = (await conn.execute(select(tenants.c.code).where(tenants.c.id == claims.tenant_id))).scalar_one_or_none()
    if code is None:
        return None
    contact = (
        await conn.execute(
            select(contacts.c.external_id, contacts.c.first_name).where(
                contacts.c.tenant_id == claims.tenant_id, contacts.c.id == claims.contact_id
            )
        )
    ).first()
    if contact is None:
        return None
    tenant = await load_tenant(conn, code)
    address = None
    kind = KIND_FOR_CHANNEL.get(claims.channel)
    if kind is not None:
        points = ContactPoint.__table__
        address = (
            await conn.execute(
                select(points.c.address).where(
                    points.c.tenant_id == tenant.id, points.c.contact_id == claims.contact_id, points.c.kind == kind
                )
            )
        ).scalar_one_or_none()
    campaign_code = None
    if claims.campaign_id is not None:
        campaigns = Campaign.__table__
        campaign_code = (
            await conn.execute(
                select(campaigns.c.code).where(campaigns.c.tenant_id == tenant.id, campaigns.c.id == claims.campaign_id)
            )
        ).scalar_one_or_none()
    return Recipient(
        tenant, claims.contact_id, contact.external_id, contact.first_name, claims.channel, address, campaign_code
    )


def mask_address(address: str | None) -> str:
    """Enough of an address for its owner to recognise it, too little for anyone else:
    `j***@example.com`, `+1******0101`. Pages behind a link are readable by whoever holds
    the link (a forwarded email)."""
    if not address:
        return ""
    local, at, domain = address.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    if len(address) <= 6:
        return "*" * len(address)
    return address[:2] + "*" * (len(address) - 6) + address[-4:]
