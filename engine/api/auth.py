"""API keys and roles: who may call which endpoint, and for which tenant.

A request names its key in `Authorization: Bearer KEY`. The database keeps only the
SHA-256 of a key (`api_keys.key_hash`), so a leaked table gives nobody a working key. A key
belongs to one tenant and one role, and a request only ever sees that tenant's data: every
handler takes the tenant from the key, never from the URL or the body.

Roles (what the seeded policy says about who may change what):

| role       | explain | check, status, deliveries | create, launch, pause, resume, cancel | tenant policy | contacts, consent events |
|------------|---------|---------------------------|---------------------------------------|---------------|--------------------------|
| `admin`    | yes     | yes                       | yes                                   | read, write   | read, write              |
| `manager`  | yes     | yes                       | yes                                   | read, write   | read, write              |
| `marketer` | yes     | yes                       | yes                                   | read          | read                     |
| `sales`    | yes     | no                        | no                                    | read          | read, write              |
| `viewer`   | yes     | status, deliveries        | no                                    | read          | read                     |

A `viewer` (an owner looking at reports, an auditor) reads everything its tenant has and
changes nothing; a dry-run check is a marketer's tool, so it is not among its rights.

Individual replies (`POST /api/v1/contacts/{external_id}/replies`): `admin`, `manager` and
`sales`.

Webhook endpoints (`/api/v1/webhooks`) are for `admin` only: an endpoint receives every
consent change of the tenant, with contact addresses, so registering one is handing the
ledger to a third party.

No key → 401; a key whose role may not → 403; a revoked key is no key.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from sqlalchemy import select

from engine.api.problems import problem
from engine.api.services import services
from engine.db.models import ApiKey, Tenant

__all__ = ["Caller", "Permission", "Role", "authenticate", "hash_key", "requires"]


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    MARKETER = "marketer"
    SALES = "sales"
    VIEWER = "viewer"


class Permission(StrEnum):
    EXPLAIN = "explain"
    CHECK_CAMPAIGNS = "check_campaigns"
    READ_CAMPAIGNS = "read_campaigns"
    READ_POLICY = "read_policy"
    WRITE_POLICY = "write_policy"
    MANAGE_WEBHOOKS = "manage_webhooks"
    # Create, launch, pause, resume, cancel a campaign (engine/api/campaign_lifecycle.py).
    RUN_CAMPAIGNS = "run_campaigns"
    READ_CONTACTS = "read_contacts"
    WRITE_CONTACTS = "write_contacts"
    RECORD_CONSENT = "record_consent"
    # A one-to-one reply to a contact (engine/api/replies_api.py): the people who talk to
    # customers, and admins and managers; marketing sends campaigns, not replies.
    SEND_REPLIES = "send_replies"


_ROLE_NAMES = frozenset(role.value for role in Role)
_EVERYONE = frozenset(Role)
_CAMPAIGN_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.MARKETER})
# Only admins and managers change the policy: it decides who may be contacted at all.
_POLICY_ROLES = frozenset({Role.ADMIN, Role.MANAGER})
# Contacts and their consent are written by whoever deals with the person (sales, a DMS
# key) and by admins and managers; not by marketers, who benefit from a consent and so
# should not be the ones recording it.
_RECORD_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.SALES})

ALLOWED: dict[Permission, frozenset[Role]] = {
    Permission.EXPLAIN: _EVERYONE,
    Permission.CHECK_CAMPAIGNS: _CAMPAIGN_ROLES,
    Permission.READ_CAMPAIGNS: _CAMPAIGN_ROLES | {Role.VIEWER},
    Permission.READ_POLICY: _EVERYONE,
    Permission.WRITE_POLICY: _POLICY_ROLES,
    Permission.MANAGE_WEBHOOKS: frozenset({Role.ADMIN}),
    Permission.RUN_CAMPAIGNS: _CAMPAIGN_ROLES,
    Permission.READ_CONTACTS: _EVERYONE,
    Permission.WRITE_CONTACTS: _RECORD_ROLES,
    Permission.RECORD_CONSENT: _RECORD_ROLES,
    Permission.SEND_REPLIES: _RECORD_ROLES,
}


@dataclass(frozen=True, slots=True)
class Caller:
    """The holder of a valid key (or a desk session, engine/desk/sessions.py): the only
    tenant it may see, its role, and the name recorded as `actor` of what it changes."""

    # None for a desk user signed in with a password (no key involved).
    key_id: int | None
    key_name: str
    tenant_id: int
    tenant_code: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return self.role in ALLOWED[permission]


def hash_key(key: str) -> str:
    """`api_keys.key_hash`: the SHA-256 of the key, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


async def authenticate(request: web.Request) -> Caller | None:
    """The caller behind the request's bearer key, or None (no key, unknown, revoked)."""
    key = _bearer(request)
    if key is None:
        return None
    keys, tenants = ApiKey.__table__, Tenant.__table__
    query = (
        select(keys.c.id, keys.c.name, keys.c.role, keys.c.tenant_id, tenants.c.code)
        .join(tenants, tenants.c.id == keys.c.tenant_id)
        .where(keys.c.key_hash == hash_key(key), keys.c.revoked_at_us.is_(None))
    )
    async with services(request).engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.role not in _ROLE_NAMES:
        return None
    return Caller(row.id, row.name, row.tenant_id, row.code, Role(row.role))


Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]


def requires(permission: Permission) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler `(request, caller)`: 401 without a valid key, 403 when the key's
    role lacks `permission`."""

    def decorate(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            caller = await authenticate(request)
            if caller is None:
                return problem(
                    401, "an API key is required: Authorization: Bearer KEY",
                    headers={"WWW-Authenticate": 'Bearer realm="consentry"'},
                )
            if not caller.may(permission):
                return problem(403, f"role {caller.role.value!r} may not {permission.value.replace('_', ' ')}")
            return await handler(request, caller)

        return wrapper

    return decorate
