"""Desk sessions: who is signed in to the desk, and the token every form must carry.

Signing in (with an API key, or a desk user's name and password) creates a row in
`desk_sessions` and gives the browser a cookie holding a random 256-bit id; the row keeps
only its SHA-256. Every request looks the session up and re-checks what stands behind it, so
a revoked key, a disabled user or a signed-out session stops working at once, not when a
cookie expires.

Forms carry the session's CSRF token (synchronizer pattern) in a hidden field; the cookie
is also SameSite=Lax, HttpOnly, and Secure whenever the desk is reached over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api.auth import Caller, Role, hash_key
from engine.clock import Clock
from engine.db.models import ApiKey, DeskSession, DeskUser, Tenant
from engine.desk.passwords import hash_password, verify_password

__all__ = [
    "COOKIE",
    "LIFETIME_US",
    "Session",
    "end_session",
    "load_session",
    "sign_in_with_key",
    "sign_in_with_password",
]

COOKIE = "consentry_desk"
# A working day; signing in again each morning is what people expect of a back office.
LIFETIME_US = 12 * 3600 * 1_000_000

_sessions, _users, _keys, _tenants = DeskSession.__table__, DeskUser.__table__, ApiKey.__table__, Tenant.__table__
_ROLE_NAMES = frozenset(role.value for role in Role)
# Checked against when the name is unknown, so a wrong name costs what a wrong password does
# (no timing tells which user names exist).
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    caller: Caller
    csrf_token: str
    # How the person signed in, shown in the page header: "user ava" or "API key 'dms'".
    signed_in_as: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


async def _start(
    conn: AsyncConnection, tenant_id: int, clock: Clock, *, user_id: int | None = None, key_id: int | None = None
) -> str:
    cookie = secrets.token_urlsafe(32)
    now = clock()
    await conn.execute(
        insert(_sessions).values(
            tenant_id=tenant_id, session_hash=_digest(cookie), user_id=user_id, api_key_id=key_id,
            csrf_token=secrets.token_urlsafe(32), created_at_us=now, expires_at_us=now + LIFETIME_US,
        )
    )
    return cookie


async def sign_in_with_key(conn: AsyncConnection, key: str, clock: Clock) -> str | None:
    """A new session's cookie value for a valid, unrevoked API key; None otherwise."""
    row = (
        await conn.execute(
            select(_keys.c.id, _keys.c.tenant_id, _keys.c.role)
            .where(_keys.c.key_hash == hash_key(key.strip()), _keys.c.revoked_at_us.is_(None))
        )
    ).first()
    if row is None or row.role not in _ROLE_NAMES:
        return None
    return await _start(conn, row.tenant_id, clock, key_id=row.id)


async def sign_in_with_password(
    conn: AsyncConnection, tenant_code: str, username: str, password: str, clock: Clock
) -> str | None:
    """A new session's cookie value for an enabled desk user and the right password."""
    row = (
        await conn.execute(
            select(_users.c.id, _users.c.tenant_id, _users.c.password_hash, _users.c.role)
            .join(_tenants, _tenants.c.id == _users.c.tenant_id)
            .where(_tenants.c.code == tenant_code.strip(), _users.c.username == username.strip(),
                   _users.c.disabled_at_us.is_(None))
        )
    ).first()
    if row is None:
        verify_password(password, _DECOY_HASH)
        return None
    if not verify_password(password, row.password_hash) or row.role not in _ROLE_NAMES:
        return None
    return await _start(conn, row.tenant_id, clock, user_id=row.id)


async def load_session(conn: AsyncConnection, cookie: str | None, clock: Clock) -> Session | None:
    """The live session behind a cookie value: not expired, not ended, and its user still
    enabled or its key not revoked."""
    if not cookie:
        return None
    query = (
        select(
            _sessions.c.id, _sessions.c.tenant_id, _sessions.c.csrf_token, _sessions.c.expires_at_us,
            _sessions.c.ended_at_us, _tenants.c.code,
            _users.c.username, _users.c.role.label("user_role"), _users.c.disabled_at_us,
            _keys.c.id.label("key_id"), _keys.c.name.label("key_name"), _keys.c.role.label("key_role"),
            _keys.c.revoked_at_us,
        )
        .join(_tenants, _tenants.c.id == _sessions.c.tenant_id)
        .outerjoin(_users, _users.c.id == _sessions.c.user_id)
        .outerjoin(_keys, _keys.c.id == _sessions.c.api_key_id)
        .where(_sessions.c.session_hash == _digest(cookie))
    )
    row = (await conn.execute(query)).first()
    if row is None or row.ended_at_us is not None or row.expires_at_us <= clock():
        return None
    if row.username is not None:
        if row.disabled_at_us is not None or row.user_role not in _ROLE_NAMES:
            return None
        caller = Caller(None, row.username, row.tenant_id, row.code, Role(row.user_role))
        return Session(row.id, caller, row.csrf_token, f"user {row.username}")
    if row.key_id is None or row.revoked_at_us is not None or row.key_role not in _ROLE_NAMES:
        return None
    caller = Caller(row.key_id, row.key_name, row.tenant_id, row.code, Role(row.key_role))
    return Session(row.id, caller, row.csrf_token, f"API key {row.key_name!r}")


async def end_session(conn: AsyncConnection, session_id: int, clock: Clock) -> None:
    await conn.execute(
        update(_sessions).where(_sessions.c.id == session_id, _sessions.c.ended_at_us.is_(None))
        .values(ended_at_us=clock())
    )


def csrf_matches(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf_token.encode(), (submitted or "").encode())
