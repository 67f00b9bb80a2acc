"""Keeps `consentry_campaigns_active{tenant,channel}` current from the database.

The alert "no sends while a campaign is active" needs to know which campaigns are sending
right now; only the database knows, across every worker, so the API counts them every
`INTERVAL_S` seconds. A campaign is active while its status is `running` (deferred-only and
finished campaigns are not).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db.models import Campaign, Tenant
from engine.db.states import CampaignStatus
from metrics import Instruments

INTERVAL_S = 30.0


async def count_active(engine: AsyncEngine) -> dict[tuple[str, str], int]:
    campaigns, tenants = Campaign.__table__, Tenant.__table__
    query = (
        select(tenants.c.code, campaigns.c.channel, func.count())
        .join(tenants, tenants.c.id == campaigns.c.tenant_id)
        .where(campaigns.c.status == CampaignStatus.RUNNING)
        .group_by(tenants.c.code, campaigns.c.channel)
    )
    async with engine.connect() as conn:
        return {(tenant, channel): n for tenant, channel, n in (await conn.execute(query)).all()}


async def _refresh_forever(engine: AsyncEngine, instruments: Instruments) -> None:
    while True:
        # A database that is briefly away must not stop the loop; /healthz reports it.
        with contextlib.suppress(SQLAlchemyError, OSError):
            instruments.set_active_campaigns(await count_active(engine))
        await asyncio.sleep(INTERVAL_S)


def install(app: web.Application, engine: AsyncEngine, instruments: Instruments) -> None:
    async def start(_app: web.Application):  # noqa: ANN202
        task = asyncio.create_task(_refresh_forever(engine, instruments))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(start)
