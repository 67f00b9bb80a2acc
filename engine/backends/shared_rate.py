"""The per-sender rate limit shared by every arq worker, on every machine, through Redis.

A GCRA (generic cell rate algorithm) in one Lua script: one key per sender holds the
theoretical arrival time (TAT) of the next free slot, in microseconds. A request for `n`
slots takes the `n` slots from max(TAT, now - burst tolerance) on, moves the TAT past them,
and returns how long the caller waits for its first slot. Redis runs a script atomically, so
N workers asking at once get disjoint slots `1/rate` apart: together they send at the rate,
never N times it.

`now` is Redis's `TIME`, not the engine's injected clock (engine/clock.py). That is not a
second source of facts: the script records no instant anywhere a user or a report reads; it
only paces. Pacing needs one clock that every worker on every machine agrees on, and the
Redis server they share is that clock (each worker's own clock may be skewed; a gating
`--at` clock may be a day ahead). The caller turns the returned wait into a local monotonic
deadline, so skew between machines does not matter either.

Chunks: a job reserves several slots per round trip, one for each of its senders waiting at
that moment and at least `CHUNK_SPAN_S` of sending, and hands them out in order. Slots
reserved and never used (the batch ended) are lost, which only slows the sender, and by at
most one chunk per batch job: far inside the 5 % the limit promises.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.send.errors import RateLimitUnavailable

__all__ = ["KEY_PREFIX", "SharedRateLimiter"]

# One key per sender (engine/send/ratelimit.py sender_key); it expires on its own once the
# sender has been idle past its last reserved slot, so no cleanup is needed.
KEY_PREFIX = "consentry:rate:"
# A chunk covers this much sending at the limit's rate: 10 ms keeps a worker's round trips
# per message low at high rates while the slots a finished batch leaves unused stay few.
CHUNK_SPAN_S = 0.01
MAX_CHUNK = 64
# Burst tolerance: a sender whose workers fell behind their slots for a moment (a busy host,
# a batch starting) may catch up by this much sending at once, never more. 50 ms at the
# rate adds at most 1 % to any window of 5 s, and keeps hiccups from costing the rate.
BURST_SPAN_S = 0.05

# KEYS[1] the sender's key; ARGV[1] the interval between slots (µs, may be fractional),
# ARGV[2] the slots wanted, ARGV[3] the burst tolerance (µs). Returns the wait (µs) until
# the first of the reserved slots; the others follow one interval apart.
# Numbers are Lua doubles: microseconds since 1970 (~1.8e15) are exact below 2^53, and
# '%.0f' writes them back without the exponent that tostring() would use.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = math.max(tat, now - tolerance)
local after = first + wanted * interval
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return string.format('%.0f', first - now)
"""


class SharedRateLimiter:
    """A `Pacer` (engine/send/ratelimit.py) whose budget lives in Redis under the sender's key.

    One per batch job; any number of them, in any number of processes, share the key.
    """

    def __init__(self, redis: Redis, sender: str, per_second: float, burst: int | None = None) -> None:
        self.key = KEY_PREFIX + sender
        self._script = redis.register_script(GCRA)
        self._interval_us = 1e6 / per_second
        if burst is None:
            burst = math.ceil(per_second * BURST_SPAN_S)
        self._tolerance_us = self._interval_us * (max(1, burst) - 1)
        self._chunk = max(1, min(MAX_CHUNK, math.floor(per_second * CHUNK_SPAN_S)))
        self._slots: deque[float] = deque()  # monotonic deadlines of reserved slots
        self._lock = asyncio.Lock()
        self._waiting = 0  # senders asking for a slot right now

    async def acquire(self) -> None:
        self._waiting += 1
        try:
            async with self._lock:  # one reservation in flight per limiter; the others take its slots
                if not self._slots:
                    # A slot for everyone already waiting: they take them next, so none is
                    # wasted, and a busy host pays one round trip per wave, not per chunk.
                    await self._reserve(min(MAX_CHUNK, max(self._chunk, self._waiting)))
                deadline = self._slots.popleft()
        finally:
            self._waiting -= 1
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _reserve(self, wanted: int) -> None:
        try:
            wait_us = int(await self._script(keys=[self.key], args=[repr(self._interval_us), wanted, repr(self._tolerance_us)]))
        except (RedisError, OSError) as exc:
            raise RateLimitUnavailable(self.key, exc) from exc
        # Waits are relative to Redis's clock, deadlines to ours: skew between them cancels.
        start = time.monotonic() + wait_us / 1e6
        step = self._interval_us / 1e6
        self._slots.extend(start + i * step for i in range(wanted))
