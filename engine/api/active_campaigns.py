"""Keeps `consentry_campaigns_active{tenant,channel}` current from the database.

The alert "no sends while a campaign is active" needs to know which campaigns have
recipients ready to send now; only the database knows, across every worker, so the API
counts them every `INTERVAL_S` seconds. Active means, by status:

- `running`: a runner is at it (or was, and died: exactly what the alert is for);
- `incomplete`: the last runner stopped with recipients still pending (a relay that
  refused us, transient errors, a lost database). Nothing sends them until someone runs
  `campaign resume`, so the alert must see them;
- `waiting` with a deferred recipient now due: quiet hours are over, and the campaign
  waits for a `resume`.

Not active: `waiting` with every deferral still ahead (quiet hours; nothing may be sent),
`paused` (an operator's decision, not a stall), drafts, finished and cancelled campaigns.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.db.models import Campaign, Delivery, Tenant
from engine.db.states import CampaignStatus, DeliveryState
from metrics import Instruments

INTERVAL_S = 30.0

# Statuses whose campaigns have recipients ready by definition.
_READY_STATUSES = (CampaignStatus.RUNNING, CampaignStatus.INCOMPLETE)


async def count_active(engine: AsyncEngine, now_us: int) -> dict[tuple[str, str], int]:
    """Active campaigns (see the module doc) per (tenant code, channel), as of `now_us`."""
    campaigns, tenants, deliveries = Campaign.__table__, Tenant.__table__, Delivery.__table__
    due = exists().where(
        deliveries.c.tenant_id == campaigns.c.tenant_id,
        deliveries.c.campaign_id == campaigns.c.id,
        deliveries.c.state == DeliveryState.DEFERRED,
        deliveries.c.defer_until_us <= now_us,
    )
    query = (
        select(tenants.c.code, campaigns.c.channel, func.count())
        .join(tenants, tenants.c.id == campaigns.c.tenant_id)
        .where(or_(campaigns.c.status.in_(_READY_STATUSES), and_(campaigns.c.status == CampaignStatus.WAITING, due)))
        .group_by(tenants.c.code, campaigns.c.channel)
    )
    async with engine.connect() as conn:
        return {(tenant, channel): n for tenant, channel, n in (await conn.execute(query)).all()}


async def _refresh_forever(engine: AsyncEngine, instruments: Instruments, clock: Clock) -> None:
    while True:
        # A database that is briefly away must not stop the loop; /healthz reports it.
        with contextlib.suppress(SQLAlchemyError, OSError):
            instruments.set_active_campaigns(await count_active(engine, clock()))
        await asyncio.sleep(INTERVAL_S)


def install(app: web.Application, engine: AsyncEngine, instruments: Instruments, clock: Clock) -> None:
    async def start(_app: web.Application):  # noqa: ANN202
        task = asyncio.create_task(_refresh_forever(engine, instruments, clock))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(start)
