"""Tenants and their versioned policies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.tenant_file import TenantFile
from engine.clock import Clock
from engine.db.models import Tenant, TenantPolicyVersion
from engine.errors import NotFoundError
from gating import TenantPolicy


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant and one version of its policy.

    `settings` and `policy` are the typed readings of the stored tenant.yaml mapping, built
    once when the record is loaded (pydantic at the edge, gating's compiled form for the
    rules): every reader in engine/ uses them, and none reads the mapping. `document` is that mapping as applied, kept only to show it back (the API).
    """

    id: int
    code: str
    name: str
    policy_version: int
    document: dict[str, Any]
    settings: TenantFile = field(init=False)  # the whole file, typed: senders, DKIM keys
    policy: TenantPolicy = field(init=False)  # the consent rules, as gating reads them
    # A digest of the policy's content: equal policies share it, whatever tenant, version or
    # database they came from, so what is derived from the policy alone can be kept by it.
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(self.document, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "fingerprint", digest)
        # The mapping was validated by campaigns/tenant_file.py when it was applied.
        object.__setattr__(self, "settings", TenantFile.model_validate(self.document))
        object.__setattr__(self, "policy", TenantPolicy.from_mapping(self.document))


async def apply_policy(
    conn: AsyncConnection, policy: dict[str, Any], source: str, clock: Clock, actor: str | None = None
) -> tuple[TenantRecord, bool]:
    """Create or update a tenant from a validated policy; returns (tenant, changed).

    An identical policy records no new version, so re-applying a file is harmless.
    """
    parsed = TenantPolicy.from_mapping(policy)
    code, name = parsed.tenant, parsed.name
    stamp = clock()
    row = (await conn.execute(select(Tenant).where(Tenant.code == code))).first()
    if row is None:
        tenant_id = (
            await conn.execute(
                insert(Tenant)
                .values(code=code, name=name, policy_version=0, created_at_us=stamp)
                .returning(Tenant.id)
            )
        ).scalar_one()
        version = 0
    else:
        tenant_id, version = row.id, row.policy_version
        current = await _policy(conn, tenant_id, version)
        if current == policy:
            return TenantRecord(tenant_id, code, name, version, policy), False
    version += 1
    await conn.execute(
        insert(TenantPolicyVersion).values(
            tenant_id=tenant_id,
            version=version,
            policy_json=json.dumps(policy, sort_keys=True),
            source_yaml=source,
            applied_at_us=stamp,
            applied_by=actor,
        )
    )
    await conn.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(name=name, policy_version=version)
    )
    return TenantRecord(tenant_id, code, name, version, policy), True


async def _policy(conn: AsyncConnection, tenant_id: int, version: int) -> dict[str, Any] | None:
    text = (
        await conn.execute(
            select(TenantPolicyVersion.policy_json).where(
                TenantPolicyVersion.tenant_id == tenant_id, TenantPolicyVersion.version == version
            )
        )
    ).scalar_one_or_none()
    return None if text is None else json.loads(text)


@dataclass(frozen=True, slots=True)
class PolicyApplied:
    """When a policy version was applied, and by whom (None: before this was recorded)."""

    version: int
    applied_at_us: int
    applied_by: str | None


async def policy_applied(conn: AsyncConnection, tenant_id: int, version: int) -> PolicyApplied:
    row = (
        await conn.execute(
            select(TenantPolicyVersion.applied_at_us, TenantPolicyVersion.applied_by).where(
                TenantPolicyVersion.tenant_id == tenant_id, TenantPolicyVersion.version == version
            )
        )
    ).one()
    return PolicyApplied(version, row.applied_at_us, row.applied_by)


async def policy_history(conn: AsyncConnection, tenant_id: int, limit: int = 20) -> list[PolicyApplied]:
    """The tenant's latest policy versions, newest first: a short read of the
    (tenant_id, version) unique index."""
    rows = (
        await conn.execute(
            select(TenantPolicyVersion.version, TenantPolicyVersion.applied_at_us, TenantPolicyVersion.applied_by)
            .where(TenantPolicyVersion.tenant_id == tenant_id)
            .order_by(TenantPolicyVersion.version.desc())
            .limit(limit)
        )
    ).all()
    return [PolicyApplied(row.version, row.applied_at_us, row.applied_by) for row in rows]


async def current_version(conn: AsyncConnection, tenant_id: int, *, lock: bool = False) -> int:
    """The tenant's current policy version; `lock` holds the tenant row until the
    transaction ends (PostgreSQL; SQLite writers are serialised anyway), so a conditional
    update (If-Match) cannot race another."""
    query = select(Tenant.policy_version).where(Tenant.id == tenant_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).scalar_one()


async def load_tenant(conn: AsyncConnection, code: str, version: int | None = None) -> TenantRecord:
    """The tenant with its current policy (or a given version of it)."""
    row = (await conn.execute(select(Tenant).where(Tenant.code == code))).first()
    if row is None:
        raise NotFoundError(f"tenant {code!r} not found (run `consentry tenant apply tenant.yaml`)")
    version = row.policy_version if version is None else version
    policy = await _policy(conn, row.id, version)
    if policy is None:
        raise NotFoundError(f"tenant {code!r} has no policy version {version}")
    return TenantRecord(row.id, row.code, row.name, version, policy)
