"""The per-sender rate limit (`rate.per_second` of the campaign).

A relay's or a provider's limit (Twilio's per-number rate) belongs to the sender, not to a
process: every runner that sends as one sender of one tenant on one channel shares one
budget. The inline backend runs one process, so the in-process `RateLimiter` is that budget;
the arq backend paces every batch job of every worker through one Redis key instead
(engine/backends/shared_rate.py). Both implement `Pacer`, which the pipeline awaits before
each transport call.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from engine.db.tenants import TenantRecord
from engine.send.identities import bulk_identity
from engine.send.launch import CampaignRecord

__all__ = ["Pacer", "RateLimiter", "sender_key"]


class Pacer(Protocol):
    """Waits until the next message may go. May raise RateLimitUnavailable (send/errors.py):
    a pacer that cannot pace stops the run rather than let it send unpaced."""

    async def acquire(self) -> None: ...


class RateLimiter:
    """Spaces acquisitions `1/rate` seconds apart; allows a burst of `burst` at start.

    One per run of the inline backend (the one process sending as that sender). Pacing
    reads the monotonic clock: it decides when to wait, never what to record.
    """

    def __init__(self, per_second: float | None, burst: int = 1) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic() - self._interval * (burst - 1)

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def sender_key(record: CampaignRecord, tenant: TenantRecord) -> str:
    """Who the campaign's messages are from, as the rate limit counts senders:
    `tenant:channel:address`, the address being the resolved From (email) or the number
    texts go from (SMS). Two campaigns from one sender share its budget."""
    model = record.definition.model
    if model.channel == "email":
        address = bulk_identity(tenant.settings.senders, model.sender.email, model.sender.name, tenant.name).email.lower()
    else:
        address = model.sender.phone or "default"
    return f"{tenant.code}:{model.channel}:{address}"
