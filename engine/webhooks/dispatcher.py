"""The dispatcher: POSTs due outbox messages to their endpoints, signed, with retries.

One loop: claim a batch of due messages (engine/webhooks/claims.py), POST them with up to
`concurrency` in flight, write every result back in one transaction, repeat; when nothing
is due, look again after `poll_s`. A 2xx answer delivers a message. Anything else (another
status, a refused connection, a timeout) schedules the next attempt after an exponential,
jittered delay — `retry_base_s` doubled per attempt, capped at `retry_cap_s`, half of it
random so receivers coming back from an outage are not hit by every dispatcher at once —
until `attempts` attempts have failed: then the message is `failed`, and stays visible in
the endpoint's deliveries. Redirects are not followed (a 3xx is a failed attempt): the
registered URL is the one that was checked.

Every instant (the signature's timestamp, when an attempt was made, when the next is due)
comes from the injected clock; `poll_s` and the HTTP timeout are durations.

It runs inside `consentry serve` (a background task of the application) and as
`consentry webhooks dispatch`; any number of them may run against one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.config import Settings
from engine.db.retry import in_transaction
from engine.errors import InputError
from engine.webhooks.claims import (
    Attempt,
    Claimed,
    claim_ids,
    due_ids,
    new_token,
    record_attempts,
    release,
)
from engine.webhooks.signing import signed_headers
from engine.webhooks.states import MessageState, Outcome
from metrics import Instruments

__all__ = ["DispatchOptions", "Dispatcher", "retry_delay_us"]

log = logging.getLogger(__name__)
US = 1_000_000
USER_AGENT = "Consentry-Webhooks/1"
# Enough of a refusal's body to say why in the deliveries listing, not a whole page.
_ERROR_BODY_BYTES = 200


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    attempts: int = 15
    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    timeout_s: float = 10.0
    claim_ttl_s: float = 60.0
    concurrency: int = 16
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        # A batch (twice the concurrency) is POSTed in at most two rounds of `timeout_s`,
        # after the batch before it (claimed while that one is POSTed): four rounds. A
        # message whose claim has less than a third of its ttl left is handed back unsent,
        # so with less than three timeouts nothing slow would ever be attempted; the
        # defaults (60 s, 10 s) leave room for all four.
        if self.claim_ttl_s < 3 * self.timeout_s:
            raise InputError(
                f"{self.claim_ttl_s:g} s is less than three times the webhook POST timeout "
                f"(CONSENTRY_WEBHOOK_TIMEOUT_S, {self.timeout_s:g} s)", field="CONSENTRY_WEBHOOK_CLAIM_TTL_S",
            )

    @classmethod
    def from_settings(cls, settings: Settings, poll_s: float = 1.0) -> DispatchOptions:
        return cls(
            attempts=settings.webhook_attempts, retry_base_s=settings.webhook_retry_base_s,
            retry_cap_s=settings.webhook_retry_cap_s, timeout_s=settings.webhook_timeout_s,
            claim_ttl_s=settings.webhook_claim_ttl_s, concurrency=settings.webhook_concurrency, poll_s=poll_s,
        )


def retry_delay_us(failed_attempts: int, base_s: float, cap_s: float, rng: random.Random) -> int:
    """The wait after the `failed_attempts`-th failure: base·2^(n−1) capped, of which the
    second half is random ("equal jitter": never zero, never more than the cap)."""
    ceiling = min(cap_s, base_s * 2 ** min(failed_attempts - 1, 40))
    return int((ceiling / 2 + rng.uniform(0, ceiling / 2)) * US)


class Dispatcher:
    """Sends the outbox of every tenant of one database."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, options: DispatchOptions, instruments: Instruments,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.options = options
        self.instruments = instruments
        self.rng = rng or random.Random()
        self.ttl_us = int(options.claim_ttl_s * US)
        # Past this much of its claim's life a message is handed back unsent: another
        # dispatcher may take it over soon, and must not find us still talking to it.
        self.margin_us = self.ttl_us // 3

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set."""
        async with self._session() as session:
            while not stop.is_set():
                try:
                    made = await self._flow(session, stop)
                except Exception:  # noqa: BLE001 - a database that is briefly away must not end the loop
                    log.warning("webhook dispatch failed; trying again in %.1f s", self.options.poll_s, exc_info=True)
                    made = 0
                if not made:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.options.poll_s)

    async def run_until_idle(self) -> int:
        """Dispatch until nothing is due (for cron and tests); returns the attempts made."""
        made = 0
        async with self._session() as session:
            while n := await self._flow(session, None):
                made += n
        return made

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.options.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
        )

    async def _flow(self, session: aiohttp.ClientSession, stop: asyncio.Event | None) -> int:
        """Claim, POST and record batches until a claim finds nothing due (or `stop`);
        returns the messages claimed. A pipeline: the next batch is claimed, and the last
        one recorded, while this one is being POSTed, so the database's round trips do
        not leave the connections idle."""
        made = 0
        token, claimed = await self._claim_batch()
        recording: asyncio.Task[None] | None = None
        upcoming: asyncio.Task[tuple[int, list[Claimed]]] | None = None
        try:
            while claimed:
                upcoming = asyncio.create_task(self._claim_batch())
                results = await self._post_all(session, claimed)
                if recording is not None:
                    await recording  # one write at a time, in order; its error ends the flow
                recording = asyncio.create_task(self._record(token, claimed, results))
                made += len(claimed)
                token, claimed = await upcoming
                upcoming = None
                if stop is not None and stop.is_set():
                    break
        finally:
            if upcoming is not None:  # an error above: what it claimed was never POSTed
                with contextlib.suppress(Exception):
                    token, claimed = await upcoming
            if recording is not None:
                await recording
            if claimed:
                await self._record(token, claimed, [None] * len(claimed))
        return made

    async def _claim_batch(self) -> tuple[int, list[Claimed]]:
        token = new_token()
        return token, await self._claim(token, 2 * self.options.concurrency)

    async def _post_all(self, session: aiohttp.ClientSession, claimed: list[Claimed]) -> list[Attempt | None]:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def attempt(message: Claimed) -> Attempt | None:
            async with gate:
                return await self._attempt(session, message)

        return list(await asyncio.gather(*(attempt(message) for message in claimed)))

    async def _record(self, token: int, claimed: list[Claimed], results: list[Attempt | None]) -> None:
        """Write back what was attempted, and hand back (`release`) what was not."""
        attempts = [result for result in results if result is not None]
        unsent = [message.message_id for message, result in zip(claimed, results, strict=True) if result is None]

        async def record(conn):  # noqa: ANN001, ANN202
            await record_attempts(conn, token, attempts)
            await release(conn, token, unsent)

        await in_transaction(self.engine, record)
        tenants = {message.message_id: message.tenant for message in claimed}
        for tenant, counts in _outcomes(attempts, tenants).items():
            self.instruments.record_webhook_attempts(tenant, counts)

    async def _claim(self, token: int, limit: int) -> list[Claimed]:
        now = self.clock()
        if self.engine.dialect.name == "sqlite":
            # Read, then claim in a transaction whose first statement is the write: a
            # read transaction that later writes fails when another writer got in between.
            async with self.engine.connect() as conn:
                ids = await due_ids(conn, now, limit)
            if not ids:
                return []

            async def claim(conn):  # noqa: ANN001, ANN202
                return await claim_ids(conn, ids, token, now, self.ttl_us)
        else:

            async def claim(conn):  # noqa: ANN001, ANN202
                return await claim_ids(conn, await due_ids(conn, now, limit), token, now, self.ttl_us)

        return await in_transaction(self.engine, claim)

    async def _attempt(self, session: aiohttp.ClientSession, message: Claimed) -> Attempt | None:
        now = self.clock()
        if now >= message.claim_until_us - self.margin_us:
            return None
        headers = {"Content-Type": "application/json", **signed_headers(message.secret, message.event_id, now, message.payload)}
        status: int | None = None
        try:
            async with session.post(message.url, data=message.payload.encode("utf-8"), headers=headers,
                                    allow_redirects=False) as response:
                status = response.status
                text = await response.content.read(_ERROR_BODY_BYTES)
            error = None if 200 <= status < 300 else f"HTTP {status}: {text.decode('utf-8', 'replace').strip()}".strip(": ")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}".strip(": ")[:500]
        if error is None:
            return Attempt(message.message_id, MessageState.DELIVERED, now, status, None, now, self.clock())
        if message.attempts >= self.options.attempts:
            log.warning("webhook %s to %s failed %d times; giving up: %s", message.event_id, message.url,
                        message.attempts, error)
            return Attempt(message.message_id, MessageState.FAILED, now, status, error, now, None)
        delay = retry_delay_us(message.attempts, self.options.retry_base_s, self.options.retry_cap_s, self.rng)
        return Attempt(message.message_id, MessageState.PENDING, now, status, error, self.clock() + delay, None)


def _outcomes(attempts: list[Attempt], tenants: dict[int, str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for a in attempts:
        outcome = {MessageState.DELIVERED: Outcome.DELIVERED, MessageState.FAILED: Outcome.FAILED}.get(a.state, Outcome.RETRY)
        counts.setdefault(tenants[a.message_id], Counter())[outcome.value] += 1
    return counts
