"""Creating, listing and revoking API keys (`consentry keys ...`).

A key is 32 random bytes, URL-safe, prefixed `csk_` so a secret scanner (and a person
reading a config file) can tell what it is. It is shown once, when created; the database
keeps its SHA-256 only. Revoking sets `revoked_at_us`: the row stays, so an audit can still
say which key did what.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.auth import Role, hash_key
from engine.clock import Clock
from engine.db.models import ApiKey
from engine.db.tenants import load_tenant
from engine.errors import InputError, NotFoundError

__all__ = ["KEY_PREFIX", "ApiKeyRecord", "create_api_key", "list_api_keys", "revoke_api_key"]

KEY_PREFIX = "csk_"
_keys = ApiKey.__table__


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    tenant: str
    name: str
    role: str
    created_at_us: int
    revoked_at_us: int | None


async def create_api_key(
    conn: AsyncConnection, tenant_code: str, role: str, name: str, clock: Clock
) -> tuple[ApiKeyRecord, str]:
    """A new key for a tenant; returns its record and the key itself (shown once)."""
    if role not in {r.value for r in Role}:
        raise InputError(f"{role!r} is not a role (admin, manager, marketer, sales, viewer)", field="--role")
    name = name.strip()
    if not name or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters", field="--name")
    tenant = await load_tenant(conn, tenant_code)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    stamp = clock()
    key_id = (
        await conn.execute(
            insert(_keys)
            .values(tenant_id=tenant.id, name=name, key_hash=hash_key(key), role=role, created_at_us=stamp)
            .returning(_keys.c.id)
        )
    ).scalar_one()
    return ApiKeyRecord(key_id, tenant.code, name, role, stamp, None), key


async def list_api_keys(conn: AsyncConnection, tenant_code: str) -> list[ApiKeyRecord]:
    tenant = await load_tenant(conn, tenant_code)
    rows = await conn.execute(select(_keys).where(_keys.c.tenant_id == tenant.id).order_by(_keys.c.id))
    return [ApiKeyRecord(r.id, tenant.code, r.name, r.role, r.created_at_us, r.revoked_at_us) for r in rows]


async def revoke_api_key(conn: AsyncConnection, tenant_code: str, key_id: int, clock: Clock) -> ApiKeyRecord:
    """Revoke a key of this tenant (revoking twice keeps the first instant)."""
    tenant = await load_tenant(conn, tenant_code)
    await conn.execute(
        update(_keys)
        .where(_keys.c.id == key_id, _keys.c.tenant_id == tenant.id, _keys.c.revoked_at_us.is_(None))
        .values(revoked_at_us=clock())
    )
    row = (await conn.execute(select(_keys).where(_keys.c.id == key_id, _keys.c.tenant_id == tenant.id))).first()
    if row is None:
        raise NotFoundError(f"tenant {tenant.code!r} has no API key {key_id}")
    return ApiKeyRecord(row.id, tenant.code, row.name, row.role, row.created_at_us, row.revoked_at_us)
