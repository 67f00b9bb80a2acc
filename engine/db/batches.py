"""Audience expansion and the batch loader: what gating needs, a batch at a time.

The audience filter runs in the database and is walked in keyset order (`contacts.id`,
never OFFSET), so memory holds one batch whatever the audience's size. Each batch costs a
constant number of queries, whatever its size:

1. the contacts of the batch joined to their address on the campaign's channel, with a flag
   saying whether another contact shares that address;
2. their consent ledger up to `now` (one index range or IN query, already ordered);
3. only when the tenant caps the channel: their bulk sends inside the cap window.

Rows come back as plain tuples in the shapes of docs/architecture.md. SQLAlchemy Core only:
the ORM costs about 3x per row here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, BigInteger, and_, any_, bindparam, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from campaigns.definition import Audience
from engine.db.models import ConsentEvent, Contact, ContactPoint, Delivery
from engine.db.states import DeliveryState, Kind
from gating.message import ADDRESS_KIND

_point = ContactPoint.__table__
_other = aliased(ContactPoint.__table__, name="other_point")
_contacts = Contact.__table__
_events = ConsentEvent.__table__
_deliveries = Delivery.__table__


@dataclass(frozen=True, slots=True)
class Cap:
    """The frequency cap that applies to this channel: `max` sends per `window_us`."""

    max: int
    window_us: int


@dataclass(slots=True)
class Batch:
    contacts: Sequence[tuple]
    ledger: Sequence[tuple]
    recent_sends: dict[int, int]
    now_us: int
    # Seconds its queries took (consentry_batch_load_seconds; the per-batch log).
    load_s: float = 0.0

    @property
    def last_id(self) -> int:
        return self.contacts[-1][0]


def _contact_query(tenant_id: int, channel: str, audience: Audience, *, whole_audience: bool = False):
    """The audience's contact rows in id order.

    `shared` says whether another contact of the tenant has the same address. A page (a
    send's batch, one contact) probes the address index once a row; `whole_audience` (a
    dry run reading everything in one statement) joins the tenant's shared addresses
    instead, found once by one walk of that index: the same flag (a contact has at most
    one point of a kind, so an address on two points is on two contacts), without a
    million probes (on PostgreSQL 2.6 s of server CPU against 6.7 s for 1 M contacts).
    """
    kind = ADDRESS_KIND.get(channel)  # letter and social have no address of their own
    points = _contacts.outerjoin(
        _point,
        and_(_point.c.tenant_id == _contacts.c.tenant_id, _point.c.contact_id == _contacts.c.id, _point.c.kind == kind),
    )
    if whole_audience:
        shared_addresses = (
            select(_other.c.address)
            .where(_other.c.tenant_id == tenant_id, _other.c.kind == kind)
            .group_by(_other.c.address)
            .having(func.count() > 1)
            .subquery("shared_address")
        )
        points = points.outerjoin(shared_addresses, shared_addresses.c.address == _point.c.address)
        shared: ColumnElement[bool] = shared_addresses.c.address.is_not(None)
    else:
        shared = exists(
            select(1)
            .select_from(_other)
            .where(
                _other.c.tenant_id == _point.c.tenant_id,
                _other.c.kind == _point.c.kind,
                _other.c.address == _point.c.address,
                _other.c.contact_id != _point.c.contact_id,
            )
        )
    query = (
        select(
            _contacts.c.id,
            _contacts.c.external_id,
            _contacts.c.timezone,
            _contacts.c.lead_source,
            _contacts.c.reviewed_at_us,
            _point.c.address,
            _point.c.is_valid,
            _point.c.zones,
            shared.label("shared"),
        )
        .select_from(points)
        .where(_contacts.c.tenant_id == tenant_id)
        .order_by(_contacts.c.id)
    )
    return _filtered(query, audience)


def _filtered(query, audience: Audience):  # noqa: ANN202
    """The audience's filters on a contacts query."""
    if audience.lead_source:
        # Lead sources match case-insensitively, as marketers type them.
        query = query.where(func.lower(_contacts.c.lead_source).in_([s.lower() for s in audience.lead_source]))
    if audience.external_id:
        query = query.where(_contacts.c.external_id.in_(audience.external_id))
    if audience.country:
        query = query.where(func.upper(_contacts.c.country).in_([c.upper() for c in audience.country]))
    if audience.region:
        query = query.where(_contacts.c.region.in_(audience.region))
    return query


async def prefetched(batches: AsyncGenerator[Batch, None]) -> AsyncIterator[Batch]:
    """The same batches, the next one read while the caller works on this one.

    The database works in its own thread (aiosqlite) or server (PostgreSQL) while gating
    uses this one, so a dry run uses both cores. A send does not prefetch: it gates each
    batch on the state read just before it goes.
    """
    pending = asyncio.ensure_future(anext(batches, None))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(anext(batches, None))
            yield batch
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await batches.aclose()


async def iter_batches(
    engine: AsyncEngine,
    tenant_id: int,
    channel: str,
    audience: Audience,
    now_us: int | Callable[[], int],
    batch_size: int = 1000,
    cap: Cap | None = None,
    after_id: int = 0,
    upto_id: int | None = None,
) -> AsyncGenerator[Batch, None]:
    """The audience a batch at a time, each loaded in its own short transaction.

    A batch is read when it is reached, so a contact changed during a long run is gated
    on its state at that moment. `now_us` is a fixed instant (a check `--at`) or a clock
    read once per batch (a live send); the instant used is the batch's `now_us`.
    """
    clock = now_us if callable(now_us) else (lambda: now_us)
    contiguous = audience.is_empty()
    # Built once with bound parameters: a new Select per page would cost SQLAlchemy a
    # fresh cache key every time (a measurable share of a 1,000-row page).
    page = _contact_query(tenant_id, channel, audience).where(_contacts.c.id > bindparam("last_id"))
    if upto_id is not None:
        page = page.where(_contacts.c.id <= upto_id)
    page = page.limit(batch_size)
    events, sends = _batch_statements(tenant_id, channel, contiguous, cap)
    last_id = after_id
    while True:
        now = clock()
        started = time.perf_counter()  # a duration only; `now` above is the batch's instant
        async with engine.connect() as conn:
            contacts = (await conn.execute(page, {"last_id": last_id})).all()
            if not contacts:
                return
            ids = [row[0] for row in contacts]
            bounds = {"lo": ids[0], "hi": ids[-1]} if contiguous else {"ids": ids}
            ledger = (await conn.execute(events, {**bounds, "now": now})).all()
            recent: dict[int, int] = {}
            if sends is not None:
                assert cap is not None  # sends is only built when there is a cap
                recent = dict((await conn.execute(sends, {**bounds, "now": now, "since": now - cap.window_us})).all())
        yield Batch(contacts, ledger, recent, now, time.perf_counter() - started)
        last_id = ids[-1]
        if len(contacts) < batch_size:
            return


async def stream_batches(
    engine: AsyncEngine,
    tenant_id: int,
    channel: str,
    audience: Audience,
    at_us: int,
    batch_size: int = 1000,
    cap: Cap | None = None,
) -> AsyncGenerator[Batch, None]:
    """The batches iter_batches gives, for a dry run at one fixed instant on PostgreSQL.

    One read-only REPEATABLE READ transaction (one snapshot: the whole audience as of one
    moment, which is what a check at `at_us` reports) on one connection: the contacts come
    from one statement read through a cursor in id order, and each batch's ledger (and
    sends) from the same range queries as iter_batches. Memory stays one batch (and the
    cursor's fetch of as many rows). A send never uses this: it gates each batch on the
    state of the moment it goes.

    The statements run on asyncpg's own connection, in the transaction SQLAlchemy began:
    rows come back as asyncpg records (tuples to gating: indexed and unpacked alike) with
    no result processing per row, which for 1 M contacts and their ledger was most of the
    checking process's reading time. Every column read here is a plain integer, text or
    boolean, which asyncpg decodes to what SQLAlchemy's processing would return.
    """
    contiguous = audience.is_empty()
    dialect = engine.dialect
    contacts_sql, contacts_args = _driver_statement(
        _contact_query(tenant_id, channel, audience, whole_audience=True), dialect
    )
    events, sends = _batch_statements(tenant_id, channel, contiguous, cap, driver_ids=True)
    events_sql, events_args = _driver_statement(events, dialect)
    sends_sql, sends_args = _driver_statement(sends, dialect) if sends is not None else ("", ())
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            # Begins the transaction (SQLAlchemy's adapter does on the first statement).
            # The audience's plan is all hash joins and one sort: compiled by JIT it cost
            # the server seconds of CPU to save nothing; and parallel workers would take
            # the core the checking process needs (both measured on 1 M contacts).
            await conn.exec_driver_sql("SET LOCAL jit = off")
            await conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            driver: Any = (await conn.get_raw_connection()).driver_connection
            cursor = await driver.cursor(contacts_sql, *_arguments(contacts_args, {}))
            started = time.perf_counter()
            while contacts := await cursor.fetch(batch_size):
                bounds = (
                    {"lo": contacts[0][0], "hi": contacts[-1][0]} if contiguous else {"ids": [row[0] for row in contacts]}
                )
                values = {**bounds, "now": at_us}
                ledger = await driver.fetch(events_sql, *_arguments(events_args, values))
                recent: dict[int, int] = {}
                if sends is not None:
                    assert cap is not None  # sends is only built when there is a cap
                    values["since"] = at_us - cap.window_us
                    recent = dict(await driver.fetch(sends_sql, *_arguments(sends_args, values)))
                yield Batch(contacts, ledger, recent, at_us, time.perf_counter() - started)
                started = time.perf_counter()


def _driver_statement(statement: Any, dialect: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The driver's SQL of a statement, and its parameters in $1, $2... order as
    (name, value): the value compiled in, or a name `_arguments` fills per call."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), tuple((name, compiled.params[name]) for name in compiled.positiontup)


def _arguments(parameters: tuple[tuple[str, Any], ...], values: dict[str, Any]) -> list[Any]:
    return [values[name] if name in values else value for name, value in parameters]


def _batch_statements(  # noqa: ANN202
    tenant_id: int, channel: str, contiguous: bool, cap: Cap | None, *, driver_ids: bool = False
):
    """A batch's ledger query and, with a cap, its recent sends query. `driver_ids`: the
    ids of a filtered audience go as one array parameter (`= ANY($n)`), for a statement
    run on the driver, which has no expanding parameters."""
    ids_of = _ids_filter(contiguous, driver_ids)
    events = (
        select(_events.c.contact_id, _events.c.id, _events.c.action, _events.c.channel, _events.c.class_code,
               _events.c.party, _events.c.address, _events.c.occurred_at_us)
        .where(_events.c.tenant_id == tenant_id, ids_of(_events.c.contact_id),
               _events.c.occurred_at_us <= bindparam("now"))
        .order_by(_events.c.contact_id, _events.c.occurred_at_us, _events.c.id)
    )
    sends = None
    if cap is not None:
        sends = (
            select(_deliveries.c.contact_id, func.count())
            .where(
                _deliveries.c.tenant_id == tenant_id, ids_of(_deliveries.c.contact_id),
                _deliveries.c.channel == channel, _deliveries.c.kind == Kind.BULK,
                # In flight counts as sent: the claim takes the cap the same way (claims.py).
                or_(
                    _deliveries.c.state == DeliveryState.SENDING,
                    and_(_deliveries.c.state == DeliveryState.SENT, _deliveries.c.sent_at_us > bindparam("since"),
                         _deliveries.c.sent_at_us <= bindparam("now")),
                ),
            )
            .group_by(_deliveries.c.contact_id)
        )
    return events, sends


def _ids_filter(contiguous: bool, driver_ids: bool = False):  # noqa: ANN202
    """The batch's contacts in another table: a range when the audience is unfiltered."""
    if contiguous:
        return lambda column: column.between(bindparam("lo"), bindparam("hi"))
    if driver_ids:
        return lambda column: column == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    return lambda column: column.in_(bindparam("ids", expanding=True))


async def load_one(
    engine: AsyncEngine, tenant_id: int, channel: str, external_id: str, now_us: int, cap: Cap | None = None
) -> Batch | None:
    """One contact's batch (explain, individual sends): the same queries as a campaign's."""
    batches = iter_batches(engine, tenant_id, channel, Audience(external_id=[external_id]), now_us, 1, cap)
    try:
        return await anext(batches, None)
    finally:
        await batches.aclose()


async def load_contact(
    conn: AsyncConnection, tenant_id: int, contact_id: int, channels: Iterable[str], now_us: int
) -> tuple[dict[str, tuple], list[tuple]] | None:
    """One contact as each channel's campaign loader sees it (its address there) and its
    ledger up to `now_us`, read on the caller's connection: the preference centre's input
    for `gating.channel_choices`. None if the contact does not exist."""
    rows = {}
    for channel in channels:
        query = _contact_query(tenant_id, channel, Audience()).where(_contacts.c.id == contact_id)
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        rows[channel] = tuple(row)
    ledger = (
        await conn.execute(
            select(_events.c.contact_id, _events.c.id, _events.c.action, _events.c.channel, _events.c.class_code,
                   _events.c.party, _events.c.address, _events.c.occurred_at_us)
            .where(_events.c.tenant_id == tenant_id, _events.c.contact_id == contact_id,
                   _events.c.occurred_at_us <= now_us)
            .order_by(_events.c.occurred_at_us, _events.c.id)
        )
    ).all()
    return rows, [tuple(row) for row in ledger]


async def iter_bounds(
    engine: AsyncEngine, tenant_id: int, audience: Audience, batch_size: int
) -> AsyncIterator[tuple[int, int]]:
    """The audience cut into batches as (after_id, upto_id] ranges, reading ids only.

    This is how a distributed run names its batch jobs: the same audience always cuts
    the same way, so a job id (campaign, after_id) is deterministic.
    """
    query = _contact_query(tenant_id, "email", audience).with_only_columns(_contacts.c.id)
    last_id = 0
    while True:
        async with engine.connect() as conn:
            ids = (await conn.execute(query.where(_contacts.c.id > last_id).limit(batch_size))).scalars().all()
        if not ids:
            return
        yield last_id, ids[-1]
        last_id = ids[-1]
        if len(ids) < batch_size:
            return
