"""Launch: record a campaign with a snapshot of its definition, policy version and templates.

A campaign id already launched is continued from its snapshot, never re-read from files:
what was checked and launched is what gets sent, even if the files changed since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.definition import CampaignDefinition, parse_campaign
from engine.db.models import Campaign
from engine.db.states import CampaignStatus
from engine.db.tenants import TenantRecord
from engine.errors import NotFoundError

_c = Campaign.__table__


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    id: int
    tenant_id: int
    code: str
    definition: CampaignDefinition
    templates: dict[str, Any]
    policy_version: int
    status: CampaignStatus
    created: bool


async def launch(
    conn: AsyncConnection, definition: CampaignDefinition, tenant: TenantRecord, templates: dict[str, Any], stamp: int,
    status: CampaignStatus = CampaignStatus.RUNNING,
) -> CampaignRecord:
    """Record the campaign (`status` RUNNING for a send, DRAFT for an API create), or
    return the one already recorded under its code."""
    existing = await find_campaign(conn, tenant.id, definition.code)
    if existing is not None:
        return existing
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    campaign_id = (
        await conn.execute(
            dialect.insert(_c)
            .values(
                tenant_id=tenant.id, code=definition.code, kind=definition.model.kind, channel=definition.channel,
                class_code=definition.class_code, party=definition.model.party,
                definition_json=json.dumps(definition.as_dict(), sort_keys=True),
                templates_json=json.dumps(templates, sort_keys=True), policy_version=tenant.policy_version,
                status=status, created_at_us=stamp, updated_at_us=stamp,
            )
            # Two runners launching one new campaign at once: the second continues the first's.
            .on_conflict_do_nothing(index_elements=["tenant_id", "code"])
            .returning(_c.c.id)
        )
    ).scalar_one_or_none()
    if campaign_id is None:
        raced = await find_campaign(conn, tenant.id, definition.code)
        assert raced is not None  # the conflicting row is committed: that is why we lost
        return raced
    return CampaignRecord(campaign_id, tenant.id, definition.code, definition, templates, tenant.policy_version, status, True)


async def find_campaign(conn: AsyncConnection, tenant_id: int, code: str) -> CampaignRecord | None:
    row = (await conn.execute(select(_c).where(_c.c.tenant_id == tenant_id, _c.c.code == code))).first()
    if row is None:
        return None
    definition = parse_campaign(json.loads(row.definition_json), shown=f"campaign {code} (snapshot)")
    return CampaignRecord(row.id, tenant_id, code, definition, json.loads(row.templates_json), row.policy_version, CampaignStatus(row.status), False)


async def get_campaign(conn: AsyncConnection, tenant_id: int, code: str) -> CampaignRecord:
    record = await find_campaign(conn, tenant_id, code)
    if record is None:
        raise NotFoundError(f"campaign {code!r} has not been launched (run `consentry campaign send`)")
    return record
