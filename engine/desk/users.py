"""Desk users (`consentry users ...`): a name and a password, one role of one tenant.

An API key can sign in to the desk too; users exist so that people do not share keys and so
that the ledger's `actor` names a person. Disabling a user ends their sessions at once (the
row stays: the audit still says who did what).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.auth import Role
from engine.clock import Clock
from engine.db.models import DeskUser
from engine.db.tenants import load_tenant
from engine.desk.passwords import MIN_LENGTH, hash_password
from engine.errors import InputError, NotFoundError

__all__ = ["DeskUserRecord", "create_user", "disable_user", "list_users"]

_users = DeskUser.__table__
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")


@dataclass(frozen=True, slots=True)
class DeskUserRecord:
    id: int
    tenant: str
    username: str
    role: str
    created_at_us: int
    disabled_at_us: int | None


async def create_user(
    conn: AsyncConnection, tenant_code: str, username: str, password: str, role: str, clock: Clock
) -> DeskUserRecord:
    if role not in {r.value for r in Role}:
        raise InputError(f"{role!r} is not a role ({', '.join(r.value for r in Role)})", field="--role")
    if not _USERNAME.fullmatch(username):
        raise InputError("a username is 1 to 200 letters, digits or . _ @ + -, starting with a letter or digit",
                         field="--username")
    if len(password) < MIN_LENGTH:
        raise InputError(f"a password needs at least {MIN_LENGTH} characters", field="password")
    tenant = await load_tenant(conn, tenant_code)
    stamp = clock()
    try:
        async with conn.begin_nested():
            user_id = (
                await conn.execute(
                    insert(_users)
                    .values(tenant_id=tenant.id, username=username, password_hash=hash_password(password),
                            role=role, created_at_us=stamp)
                    .returning(_users.c.id)
                )
            ).scalar_one()
    except IntegrityError:
        raise InputError(f"tenant {tenant.code!r} already has a user {username!r}", field="--username") from None
    return DeskUserRecord(user_id, tenant.code, username, role, stamp, None)


async def list_users(conn: AsyncConnection, tenant_code: str) -> list[DeskUserRecord]:
    tenant = await load_tenant(conn, tenant_code)
    rows = await conn.execute(select(_users).where(_users.c.tenant_id == tenant.id).order_by(_users.c.id))
    return [DeskUserRecord(r.id, tenant.code, r.username, r.role, r.created_at_us, r.disabled_at_us) for r in rows]


async def disable_user(conn: AsyncConnection, tenant_code: str, username: str, clock: Clock) -> DeskUserRecord:
    """Disable a user (twice keeps the first instant); their sessions stop working at once."""
    tenant = await load_tenant(conn, tenant_code)
    where = (_users.c.tenant_id == tenant.id, _users.c.username == username)
    await conn.execute(update(_users).where(*where, _users.c.disabled_at_us.is_(None)).values(disabled_at_us=clock()))
    row = (await conn.execute(select(_users).where(*where))).first()
    if row is None:
        raise NotFoundError(f"tenant {tenant.code!r} has no desk user {username!r}")
    return DeskUserRecord(row.id, tenant.code, row.username, row.role, row.created_at_us, row.disabled_at_us)
