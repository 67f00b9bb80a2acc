"""What the send stage derives from a campaign before gating it: the tenant and its policy,
the gating `Message`, the frequency cap of the channel, and a decision's reason code.

`campaign check` (the dry run) and `explain` read these too, so the three agree on what a
campaign is.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.definition import CampaignDefinition, validate_against_policy
from engine.db.batches import Cap
from engine.db.tenants import TenantRecord, load_tenant
from engine.errors import NotFoundError
from gating import Decision, Message, TenantPolicy

US_PER_HOUR = 3_600_000_000


async def tenant_for(engine: AsyncEngine, definition: CampaignDefinition) -> TenantRecord:
    """The campaign's tenant with its current policy; errors point at the definition's lines."""
    async with engine.connect() as conn:
        try:
            tenant = await load_tenant(conn, definition.tenant)
        except NotFoundError as exc:
            raise definition.error("tenant", str(exc)) from None
    validate_against_policy(definition, tenant.policy, tenant.settings.senders)
    return tenant


def cap_for(policy: TenantPolicy, channel: str) -> Cap | None:
    """The tenant's frequency cap on `channel`, if it has one."""
    for cap in policy.frequency_caps:
        if cap.channel == channel:
            return Cap(cap.max, cap.per_hours * US_PER_HOUR)
    return None


def message_for(definition: CampaignDefinition) -> Message:
    model = definition.model
    return Message(kind=model.kind, channel=model.channel, class_code=model.class_, party=model.party)


def reason_code(decision: Decision) -> str:
    """The decision's reason code, "" for a send."""
    reason = decision.reason
    return "" if reason is None else reason.value
