"""A per-sender rate limit (`rate.per_second` of the campaign)."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Spaces acquisitions `1/rate` seconds apart; allows a burst of `burst` at start.

    One limiter per sender, shared by all the workers that send as that sender.
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
