"""`campaign status` and `campaign export`: what happened, per recipient, from the ledger."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.db import deliveries as ledger
from engine.db.models import Contact, Delivery
from engine.db.states import outcome_of
from engine.send.launch import CampaignRecord
from engine.timeutil import iso_z

EXPORT_COLUMNS = (
    "external_id", "channel", "address", "decision", "reason", "defer_until", "state", "provider_id", "attempts", "sent_at",
    # Added after FORMATS.md's first columns: what happened, one word, the opt-in request its own.
    "outcome",
    # Why the last attempt did not deliver (the relay's reply, why the run stopped, or a
    # bounce's status and diagnostic that came back later by mail); empty for rows never
    # attempted.
    "last_error",
    # What came back later by mail (docs/inbound-mail.md): `hard_bounce` | `soft_bounce` |
    # `complaint`, and how many delayed / temporary-failure reports arrived.
    "feedback", "soft_bounces",
)
# `campaign status` lists the most common last errors, not every one: the export has each.
STATUS_ERRORS = 20
_d = Delivery.__table__
_c = Contact.__table__


async def status(engine: AsyncEngine, record: CampaignRecord) -> dict:
    async with engine.connect() as conn:
        counts = await ledger.counts_by_state(conn, record.tenant_id, record.id)
        feedback = await ledger.counts_by_feedback(conn, record.tenant_id, record.id)
        row = (await conn.execute(select(_campaign_status(record.id)))).first()
        rows = func.count().label("rows")
        errors = (await conn.execute(
            select(_d.c.state, _d.c.error, rows)
            .where(_d.c.tenant_id == record.tenant_id, _d.c.campaign_id == record.id, _d.c.error.is_not(None))
            .group_by(_d.c.state, _d.c.error)
            .order_by(rows.desc(), _d.c.state, _d.c.error)
            .limit(STATUS_ERRORS)
        )).all()
    by_state: dict[str, int] = {}
    by_outcome: dict[str, int] = {}
    for state, purpose, _decision, _reason, n in counts:
        by_state[state] = by_state.get(state, 0) + n
        outcome = outcome_of(state, purpose)
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    return {
        "campaign": record.code,
        "status": row[0] if row else record.status,
        "channel": record.definition.channel,
        "kind": record.definition.model.kind,
        "total": sum(by_state.values()),
        "states": by_state,
        # The same rows by what happened to them; the opt-in request is its own outcome.
        "outcomes": by_outcome,
        # What came back later by mail: rows per `feedback` (hard_bounce, soft_bounce, complaint).
        "feedback": feedback,
        "decisions": [
            {"state": str(s), "outcome": str(outcome_of(s, p)), "purpose": str(p), "decision": d, "reason": r, "count": n}
            for s, p, d, r, n in sorted(counts, key=lambda item: (-item[4], item[0], item[3]))
        ],
        # The most common last errors of the rows that have one (every row's: the export).
        "last_errors": [{"state": state, "last_error": error, "count": count} for state, error, count in errors],
    }


def _campaign_status(campaign_id: int):  # noqa: ANN202
    from engine.db.models import Campaign

    table = Campaign.__table__
    return select(table.c.status).where(table.c.id == campaign_id).scalar_subquery()


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which rows an export keeps (each None: any): the API's `?decision=&reason=&state=`."""

    decision: str | None = None
    reason: str | None = None
    state: str | None = None


async def export_rows(
    engine: AsyncEngine, record: CampaignRecord, where: ExportFilter = ExportFilter(), page: int = 5000
) -> AsyncIterator[list[tuple]]:
    """Every delivery row as EXPORT_COLUMNS values, a page at a time, keyset by id: memory
    stays flat however large the campaign, and each page is its own short read."""
    last_id = 0
    query = (
        select(_d.c.id, _c.c.external_id, _d.c.channel, _d.c.address, _d.c.decision, _d.c.reason, _d.c.defer_until_us,
               _d.c.state, _d.c.provider_id, _d.c.attempts, _d.c.sent_at_us, _d.c.purpose, _d.c.error, _d.c.feedback,
               _d.c.soft_bounces)
        .join(_c, _c.c.id == _d.c.contact_id)
        .where(_d.c.tenant_id == record.tenant_id, _d.c.campaign_id == record.id)
        .order_by(_d.c.id)
        .limit(page)
    )
    if where.decision is not None:
        query = query.where(_d.c.decision == where.decision)
    if where.reason is not None:
        query = query.where(_d.c.reason == where.reason)
    if where.state is not None:
        query = query.where(_d.c.state == where.state)
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(query.where(_d.c.id > last_id))).all()
        if not rows:
            return
        yield [
            (r[1], r[2], r[3] or "", r[4], r[5] or "", iso_z(r[6]), r[7], r[8] or "", r[9], iso_z(r[10]),
             str(outcome_of(r[7], r[11])), r[12] or "", r[13] or "", r[14] or 0)
            for r in rows
        ]
        last_id = rows[-1][0]


async def export(engine: AsyncEngine, record: CampaignRecord, out: IO[str], page: int = 5000) -> int:
    """Stream every delivery row, keyset by id, into CSV."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    async for rows in export_rows(engine, record, page=page):
        writer.writerows(rows)
        written += len(rows)
    return written
