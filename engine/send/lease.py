"""One runner per campaign at a time.

Exactly-once rests on one fact: a delivery row in state `sending` belongs to a runner that
may still be talking to the relay. A second runner of the same campaign would take those
rows for crash leftovers and reconcile or resend them. So a runner holds a lease on the
campaign row (`runner` = `host:pid`, `lease_until_us`), renews it while it works, and
releases it at the end. A lease is taken over when it has expired, or at once when its
holder is a process of this machine that no longer exists (a kill -9 followed by
`campaign resume` must not wait). The arq backend's batch jobs need no lease: arq itself
never runs two jobs with one id, and batches do not overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db.models import Campaign
from engine.errors import ConflictError
from engine.timeutil import now_us

LEASE_US = 30_000_000  # a runner that stops renewing is presumed dead after 30 s
RENEW_S = 5.0
_c = Campaign.__table__


def this_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead_local(runner: str | None) -> bool:
    if not runner:
        return True
    host, _, pid = runner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()  # our own earlier lease (an in-process resume)


async def _acquire(engine: AsyncEngine, campaign_id: int, me: str) -> None:
    now = now_us()
    async with engine.begin() as conn:
        holder = (await conn.execute(select(_c.c.runner, _c.c.lease_until_us).where(_c.c.id == campaign_id))).first()
        free = or_(_c.c.runner.is_(None), _c.c.lease_until_us < now, _c.c.runner == me)
        if holder is not None and _is_dead_local(holder.runner):
            free = or_(free, _c.c.runner == holder.runner)
        taken = await conn.execute(
            update(_c).where(_c.c.id == campaign_id, free).values(runner=me, lease_until_us=now + LEASE_US)
        )
    if taken.rowcount != 1:
        raise ConflictError(
            f"campaign is being sent by {holder.runner} (lease until it stops, or 30 s after it dies); "
            "one runner per campaign keeps every message single"
        )


async def _renew(engine: AsyncEngine, campaign_id: int, me: str) -> None:
    while True:
        await asyncio.sleep(RENEW_S)
        async with engine.begin() as conn:
            await conn.execute(
                update(_c).where(_c.c.id == campaign_id, _c.c.runner == me).values(lease_until_us=now_us() + LEASE_US)
            )


@contextlib.asynccontextmanager
async def campaign_lease(engine: AsyncEngine, campaign_id: int) -> AsyncIterator[None]:
    """Hold the campaign's lease for the duration of the block, or raise ConflictError."""
    me = this_runner()
    await _acquire(engine, campaign_id, me)
    renewer = asyncio.create_task(_renew(engine, campaign_id, me))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        async with engine.begin() as conn:
            await conn.execute(update(_c).where(_c.c.id == campaign_id, _c.c.runner == me).values(runner=None, lease_until_us=None))
