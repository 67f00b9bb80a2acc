"""`Idempotency-Key` on the POSTs that create (docs/api.md, "Idempotency").

A client that lost a response sends the same request again with the same key. The first
response is stored with the key, per tenant, in the transaction that did the work (so a
stored response always means the work was committed, and work that rolled back leaves no
key); a repeat with the same method, path and body gets that response again without
writing anything, a repeat with another request under the same key is a 422.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import IdempotencyKey
from engine.errors import InputError

__all__ = ["HEADER", "remember", "replay", "request_hash", "request_key", "settle", "stored"]

HEADER = "Idempotency-Key"
_MAX_KEY = 200
_keys = IdempotencyKey.__table__


def request_key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise InputError(f"must be 1 to {_MAX_KEY} printable characters", field=HEADER)
    return key


def request_hash(request: web.Request, body: bytes) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


async def replay(conn: AsyncConnection, tenant_id: int, key: str, digest: str) -> web.Response | None:
    """The stored response of an earlier request with this key, or None for a new key."""
    found = await stored(conn, tenant_id, key, digest)
    if found is None:
        return None
    return web.json_response(text=found[1], status=found[0], headers={"Idempotent-Replayed": "true"})


async def stored(conn: AsyncConnection, tenant_id: int, key: str, digest: str) -> tuple[int, str] | None:
    """(status, JSON text) stored under the key, or None for a new key; InputError when the
    key was used with another request."""
    row = (
        await conn.execute(
            select(_keys.c.request_hash, _keys.c.status, _keys.c.body).where(
                _keys.c.tenant_id == tenant_id, _keys.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise InputError("was already used with another request (a new request needs a new key)", field=HEADER)
    return row.status, row.body


async def remember(
    conn: AsyncConnection, tenant_id: int, key: str, digest: str, status: int, body: object, now_us: int
) -> str:
    """Store the response under the key (in the caller's transaction); returns its text."""
    text = json.dumps(body)
    await conn.execute(
        _keys.insert().values(
            tenant_id=tenant_id, key=key, request_hash=digest, status=status, body=text, created_at_us=now_us
        )
    )
    return text


async def settle(conn: AsyncConnection, tenant_id: int, key: str, status: int, body: object) -> None:
    """Replace a key's stored response: for work that cannot run inside one transaction (an
    individual reply goes out over the wire), the key is first remembered as "in progress"
    and committed, so a concurrent or repeated request cannot send again, then settled here."""
    await conn.execute(
        _keys.update().where(_keys.c.tenant_id == tenant_id, _keys.c.key == key).values(status=status, body=json.dumps(body))
    )
