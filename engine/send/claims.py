"""Claims: a delivery is handed to a transport only by the runner that claimed it.

Exactly once does not rest on a lease being respected: a paused process (SIGSTOP, a VM or
container pause, a starved host) wakes up believing what it believed before. So:

- every runner draws a **fencing token** from its campaign (`campaigns.claim_seq`, one
  larger per runner) when it starts;
- a row goes `pending → sending` only by a conditional UPDATE that carries the token and a
  claim expiry (`claim_until_us`). The database lets exactly one runner win it. A row in
  `sending` whose claim has lapsed is *in doubt* (its runner died or froze mid-call) and
  may be reclaimed by another runner, which reconciles it (SMS) or resends it with its
  original Message-ID (email);
- the runner renews its claims every `ttl / 6`, and dispatches only while its own view of
  them has at least `ttl / 3` left (`may_dispatch`). A runner that was frozen past that, or
  whose renewals fail (database gone), stops before its next transport call; the SMTP
  transport checks again just before the message itself goes (before DATA, or after 354
  when pipelining), so a pause in the middle of a mail transaction aborts it instead of
  completing it;
- results are written back only where the row still carries our token, so a late writer
  never overwrites the runner that took over;
- a paused or cancelled campaign (`campaigns.status`, set over the API) is seen by every
  runner: a claim reads the status first and takes nothing, and each renewal reads it in
  its transaction, so `may_dispatch` turns False within one renewal (`ttl / 6`) for every
  runner, inline or arq, and the rows it holds go back to `pending` (withdrawn, released).

The frequency cap is taken in the same statement as the claim (`_under_cap`): the count of
the contact's bulk deliveries on the channel that are `sending`, or `sent` inside the
window, must leave room. On PostgreSQL the contacts of the chunk are locked first (FOR NO
KEY UPDATE, in id order, so concurrent claimers cannot deadlock), so two campaigns cannot
both see room for the last message; SQLite runs one writer at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from engine.clock import Clock
from engine.db.batches import Cap
from engine.db.models import Campaign, Contact, Delivery
from engine.db.retry import ATTEMPTS, SQLITE_BUSY, database_unreachable, in_transaction
from engine.db.states import HALTED_STATUSES, CampaignStatus, DeliveryState, Kind, Purpose
from gating import DecisionKind, Reason

log = logging.getLogger(__name__)

# The result write of `record`, in SQLite's own dialect for `record_on_sqlite`.
_RECORD_SQLITE = (
    "UPDATE deliveries SET state = ?, provider_id = ?, segments = ?, error = ?, sent_at_us = ?, updated_at_us = ?, "
    "claim_until_us = NULL WHERE id = ? AND claim_token = ? AND state = 'sending'"
)

# How long a result write waits for SQLite's write lock in all: as long as any other write
# of the engine would (a 30 s busy timeout, engine/db/session.py, tried up to ATTEMPTS
# times, engine/db/retry.py). A runner frozen inside its write transaction holds the lock
# until it wakes, and the runner that took over must outwait it, not give up.
SQLITE_LOCK_WAIT_S = 30.0 * ATTEMPTS

_d = Delivery.__table__
_other = aliased(Delivery.__table__, name="other_delivery")
_campaigns = Campaign.__table__
_contacts = Contact.__table__
US = 1_000_000


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row this runner now holds: its id, how many claims it has had (this one included)
    and when the first was taken (the earliest an earlier attempt can have begun)."""

    delivery_id: int
    attempts: int
    first_claimed_at_us: int


async def draw_token(conn: AsyncConnection, campaign_id: int) -> int:
    """The next fencing token of a campaign: larger than every token handed out before."""
    result = await conn.execute(
        update(_campaigns)
        .where(_campaigns.c.id == campaign_id)
        .values(claim_seq=_campaigns.c.claim_seq + 1)
        .returning(_campaigns.c.claim_seq)
    )
    return int(result.scalar_one())


def _under_cap(cap: Cap, now_us: int):  # noqa: ANN202
    """The row's contact has room under the cap, not counting the row itself."""
    taken = (
        select(func.count())
        .select_from(_other)
        .where(
            _other.c.tenant_id == _d.c.tenant_id,
            _other.c.contact_id == _d.c.contact_id,
            _other.c.channel == _d.c.channel,
            _other.c.kind == Kind.BULK,
            _other.c.id != _d.c.id,
            or_(
                _other.c.state == DeliveryState.SENDING,
                and_(_other.c.state == DeliveryState.SENT, _other.c.sent_at_us > now_us - cap.window_us),
            ),
        )
        .scalar_subquery()
    )
    # The opt-in request is the one text rule 4 allows: the cap does not hold it back.
    return or_(_d.c.purpose != Purpose.CAMPAIGN, taken < cap.max)


class Claimant:
    """One runner's claims on one campaign's deliveries."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, campaign_id: int, ttl_s: float, cap: Cap | None = None,
        lease_clock: Clock | None = None,
    ) -> None:
        """`clock` is the run's gating clock (the cap window, row stamps); `lease_clock`
        measures the time that passes between runners (claim expiry): the same clock,
        except for a send `--at` a later instant, whose claims must lapse in real time for
        a `resume` that runs at now."""
        if ttl_s <= 0:
            raise ValueError("claim ttl must be positive")
        self.engine = engine
        self.gating_clock = clock
        self.clock = lease_clock or clock
        self.campaign_id = campaign_id
        self.ttl_us = int(ttl_s * US)
        self.renew_every_s = ttl_s / 6
        self.margin_us = self.ttl_us // 3
        self.cap = cap
        self.token = 0
        self.valid_until_us = 0
        self.lost = False
        # The campaign's status when a claim or renewal found it paused or cancelled: this
        # runner dispatches nothing more (not "lost": its claims are still good).
        self.halted: CampaignStatus | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._record_statements: dict[tuple[str, ...], Any] = {}

    async def start(self) -> int:
        """Draw this runner's fencing token and start renewing; returns the token."""
        started = self.clock()
        async with self.engine.begin() as conn:
            self.token = await draw_token(conn, self.campaign_id)
        self.valid_until_us = started + self.ttl_us
        self._renewer = asyncio.create_task(self._renew_forever())
        return self.token

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def may_dispatch(self) -> bool:
        """May a transport be called for a row we hold? False for good once we lost them."""
        if self.lost or self.halted is not None:
            return False
        if self.clock() >= self.valid_until_us - self.margin_us:
            self.lost = True
            log.warning("campaign %s: runner %s lost its claims (paused, or no database for too long)",
                        self.campaign_id, self.token)
        return not self.lost

    async def claim(self, conn: AsyncConnection, rows: Sequence[tuple[int, int]], bulk: bool) -> list[Claimed]:
        """Claim these (delivery id, contact id) rows; returns those that are now ours.

        A row is claimable when it is pending, or sending under a lapsed claim (in doubt).
        Capped rows that are still pending are suppressed `frequency_capped` in the same
        transaction, so nothing is left hanging. Runs in the caller's transaction.
        """
        if not rows or self.lost or self.halted is not None:
            return []
        now = self.clock()
        stamp = self.gating_clock()
        ids = sorted(delivery_id for delivery_id, _contact in rows)
        cap = self.cap if bulk else None
        capped = cap is not None
        if capped and conn.dialect.name == "postgresql":
            contact_ids = sorted({contact_id for _delivery, contact_id in rows})
            await conn.execute(
                select(_contacts.c.id).where(_contacts.c.id.in_(contact_ids)).order_by(_contacts.c.id).with_for_update(key_share=True)
            )
        claimable = and_(
            _d.c.id.in_(ids),
            or_(
                _d.c.state == DeliveryState.PENDING,
                and_(_d.c.state == DeliveryState.SENDING, or_(_d.c.claim_until_us.is_(None), _d.c.claim_until_us < now)),
            ),
        )
        if cap is not None:
            claimable = and_(claimable, _under_cap(cap, stamp))
        # Nothing is taken from a paused or cancelled campaign: the status is read by the
        # claim statement itself (no query of its own per chunk; read apart below only
        # when some rows were not won, to tell a halt from rows held by another runner).
        claimable = and_(claimable, select(_campaigns.c.id).where(
            _campaigns.c.id == self.campaign_id, _campaigns.c.status.not_in([status.value for status in HALTED_STATUSES])
        ).exists())
        result = await conn.execute(
            update(_d)
            .where(claimable)
            .values(
                state=DeliveryState.SENDING, claim_token=self.token, claim_until_us=now + self.ttl_us,
                attempts=_d.c.attempts + 1, updated_at_us=stamp,
                first_claimed_at_us=func.coalesce(_d.c.first_claimed_at_us, now),
            )
            .returning(_d.c.id, _d.c.attempts, _d.c.first_claimed_at_us)
        )
        claimed = [Claimed(row[0], row[1], row[2]) for row in result]
        if len(claimed) < len(ids) and await self._read_halt(conn):
            # Halted: rows won before the halt are withdrawn by the workers (may_dispatch is
            # False from now on) and handed back; no capped row is suppressed meanwhile.
            return claimed
        if capped and len(claimed) < len(ids):
            won = {c.delivery_id for c in claimed}
            await conn.execute(
                update(_d)
                .where(_d.c.id.in_([i for i in ids if i not in won]), _d.c.state == DeliveryState.PENDING,
                       _d.c.purpose == Purpose.CAMPAIGN)
                .values(state=DeliveryState.SUPPRESSED, decision=DecisionKind.SUPPRESS, reason=Reason.FREQUENCY_CAPPED.value,
                        updated_at_us=stamp)
            )
        return claimed

    async def record(self, conn: AsyncConnection, changes: list[dict]) -> None:
        """Write results (dicts with `_id` and the same keys) where the row is still ours."""
        if not changes:
            return
        # In id order, as claims and renewals lock rows: two transactions of one runner (the
        # result writer and the renewal) then never wait on each other in a cycle.
        changes = sorted(changes, key=itemgetter("_id"))
        keys = tuple(key for key in changes[0] if key != "_id")
        statement = self._record_statements.get(keys)
        if statement is None:
            # Built once per run: results are written thousands of times a minute.
            statement = self._record_statements[keys] = (
                update(_d)
                .where(_d.c.id == bindparam("_id"), _d.c.claim_token == self.token, _d.c.state == DeliveryState.SENDING)
                .values({**{key: bindparam(key) for key in keys}, "claim_until_us": None})
            )
        await conn.execute(statement, changes)

    async def record_on_sqlite(self, connection: sqlite3.Connection, changes: list[dict]) -> None:
        """`record` for SQLite, on a plain sqlite3 connection of the event loop's own thread.

        Results are the hot path (one transaction per few messages). Through aiosqlite a
        transaction crosses to the driver's thread and back twice, and each crossing waits
        for the GIL while the loop is busy (up to the 5 ms switch interval): the workers
        waiting for their commits then sit idle. Here the UPDATE and the COMMIT run where
        the loop is, in well under a millisecond, with no thread, future or wake-up. Same
        statement, same condition on the token. The connection never waits for SQLite's write lock (busy
        timeout 0, so the loop is never blocked on another writer): a transaction that
        finds it taken is rolled back and run again after a short sleep.
        """
        if not changes:
            return
        rows = [
            (c["state"], c["provider_id"], c["segments"], c["error"], c["sent_at_us"], c["updated_at_us"], c["_id"], self.token)
            for c in changes
        ]
        waited = 0.0
        delay = 0.001
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.executemany(_RECORD_SQLITE, rows)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                return
            except sqlite3.OperationalError as exc:
                # As long as the engine's own connections wait for the lock (their busy
                # timeout), but asleep, so the loop goes on meanwhile.
                if waited >= SQLITE_LOCK_WAIT_S or getattr(exc, "sqlite_errorcode", None) not in SQLITE_BUSY:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)

    async def release(self, ids: Sequence[int]) -> None:
        """Hand rows we claimed but never dispatched back to `pending` (best effort: if the
        database is gone, they lapse into doubt and are reclaimed after the ttl)."""
        if not ids:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(_d)
                    .where(_d.c.id.in_(list(ids)), _d.c.claim_token == self.token, _d.c.state == DeliveryState.SENDING)
                    .values(state=DeliveryState.PENDING, claim_until_us=None, attempts=_d.c.attempts - 1)
                )
        except Exception as exc:  # noqa: BLE001 - releasing is an optimisation; the ttl is the guarantee
            # The database out of reach is said in a line; anything else gets its traceback.
            log.warning("campaign %s: could not release %d claims (%s); they lapse in %.0f s",
                        self.campaign_id, len(ids), _first_line(exc), self.ttl_us / US,
                        exc_info=not database_unreachable(exc))

    async def _read_halt(self, conn: AsyncConnection) -> bool:
        """Read the campaign's status; True (and `halted` set) when it is paused or cancelled."""
        status = (await conn.execute(select(_campaigns.c.status).where(_campaigns.c.id == self.campaign_id))).scalar_one()
        if status in HALTED_STATUSES:
            if self.halted is None:
                log.info("campaign %s is %s: runner %s stops dispatching", self.campaign_id, status, self.token)
            self.halted = CampaignStatus(status)
        return self.halted is not None

    async def _renew(self, conn: AsyncConnection, until_us: int) -> None:
        # Rows locked in id order (the subquery's FOR UPDATE), the order claims and result
        # writes take them: a renewal and this runner's own result writer cannot deadlock.
        ours = (
            select(_d.c.id)
            .where(_d.c.campaign_id == self.campaign_id, _d.c.state == DeliveryState.SENDING,
                   _d.c.claim_token == self.token)
            .order_by(_d.c.id)
        )
        if conn.dialect.name == "postgresql":
            ours = ours.with_for_update()
        await conn.execute(
            update(_d).where(_d.c.id.in_(ours.scalar_subquery()), _d.c.claim_token == self.token)
            .values(claim_until_us=until_us)
        )
        # The one extra query a pause costs: every runner sees it within ttl / 6.
        await self._read_halt(conn)

    async def _renew_forever(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.renew_every_s)
            if not self.may_dispatch():
                return
            # Read the clock before the statement: the claims we extend are good until at
            # least this, whenever the statement lands.
            started = self.clock()
            try:
                await in_transaction(self.engine, partial(self._renew, until_us=started + self.ttl_us))
            except Exception as exc:  # noqa: BLE001 - a failed renewal shortens our view; may_dispatch decides
                log.warning("campaign %s: claim renewal failed (%s)", self.campaign_id, _first_line(exc),
                            exc_info=not database_unreachable(exc))
                continue
            self.valid_until_us = max(self.valid_until_us, started + self.ttl_us)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__
