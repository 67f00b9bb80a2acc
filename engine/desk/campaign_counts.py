"""A campaign's report for the desk: the API's `status`, remembered once it has finished.

Counting a million rows per state, decision and reason reads a million index entries
(migration 0011 makes it an index-only scan): about half a second on a busy two-core
machine, too slow for a page people open again and again. A finished campaign's rows no
longer change, with one exception: mail that comes back later (engine/inbound/feedback.py:
a bounce can turn a `sent` row `failed` and sets its error). So this process remembers a
finished campaign's report together with a fingerprint of exactly what could still change
it, read from the small partial index on rows with feedback:

- the campaign's status and `updated_at_us` (a re-run makes it `running` again);
- over its rows with feedback: how many, the sum of their `feedback_at_us` and of their
  `soft_bounces` (every write of feedback.py moves one of these).

A different fingerprint is counted afresh. Each process has its own memory (at most
MEMO_SIZE campaigns, per database URL); nothing is shared.

A campaign that has not finished (running, paused, waiting) changes all the time, and
counting it takes about half a second at a million rows: its report is kept for
`LIVE_FOR_US` (5 s of the service's clock) as long as the campaign's status and
`updated_at_us` stay the same, so a pause, resume or cancel shows at once and only the
counts may be a few seconds old (the page says when they were counted). Requests that
arrive while a count is running wait for it rather than starting their own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.db.models import Campaign, Delivery
from engine.db.states import CampaignStatus
from engine.desk.campaign_reads import Progress, progress_by_campaign, progress_of
from engine.send.launch import CampaignRecord
from engine.send.report import status

__all__ = ["LIVE_FOR_US", "campaign_report", "campaigns_progress"]

MEMO_SIZE = 256
LIVE_FOR_US = 5_000_000
_c = Campaign.__table__
_d = Delivery.__table__
Fingerprint = tuple[Any, ...]
# (database, tenant_id, campaign_id) → (fingerprint, status report); the list's progress likewise.
Key = tuple[str, int, int]
_REPORTS: OrderedDict[Key, tuple[Fingerprint, dict[str, Any]]] = OrderedDict()
_PROGRESS: OrderedDict[Key, tuple[Fingerprint, Progress]] = OrderedDict()
# A campaign not finished: (status, updated_at_us) → (counted at, report), for LIVE_FOR_US.
_LIVE: OrderedDict[Key, tuple[Fingerprint, int, dict[str, Any]]] = OrderedDict()
_COUNTING: dict[Key, asyncio.Lock] = {}


async def _fingerprints(conn: AsyncConnection, tenant_id: int, campaign_ids: Sequence[int]) -> dict[int, Fingerprint]:
    """Fingerprints of the finished ones among `campaign_ids` (others are not remembered)."""
    finished = {
        row.id: (row.status, row.updated_at_us)
        for row in await conn.execute(
            select(_c.c.id, _c.c.status, _c.c.updated_at_us).where(
                _c.c.tenant_id == tenant_id, _c.c.id.in_(list(campaign_ids)), _c.c.status == CampaignStatus.FINISHED
            )
        )
    }
    if not finished:
        return {}
    feedback = {
        row[0]: tuple(row[1:])
        for row in await conn.execute(
            select(_d.c.campaign_id, func.count(), func.coalesce(func.sum(_d.c.feedback_at_us), 0),
                   func.coalesce(func.sum(_d.c.soft_bounces), 0))
            .where(_d.c.tenant_id == tenant_id, _d.c.campaign_id.in_(list(finished)), _d.c.feedback.is_not(None))
            .group_by(_d.c.campaign_id)
        )
    }
    return {campaign_id: (*head, *feedback.get(campaign_id, (0, 0, 0))) for campaign_id, head in finished.items()}


def _remember(memo: OrderedDict, key: Key, value: tuple) -> None:  # noqa: ANN001 - either memo
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > MEMO_SIZE:
        memo.popitem(last=False)


async def campaign_report(engine: AsyncEngine, record: CampaignRecord, now_us: int) -> tuple[dict[str, Any], int]:
    """`campaign status --json` (engine/send/report.py) and the instant it was counted:
    remembered while it cannot change, or for LIVE_FOR_US while the campaign runs."""
    key = (str(engine.url), record.tenant_id, record.id)
    if len(_COUNTING) > 4 * MEMO_SIZE:
        for idle in [k for k, held in _COUNTING.items() if not held.locked()]:
            del _COUNTING[idle]
    lock = _COUNTING.setdefault(key, asyncio.Lock())
    async with lock:
        async with engine.connect() as conn:
            fingerprint = (await _fingerprints(conn, record.tenant_id, [record.id])).get(record.id)
            head = None
            if fingerprint is None:
                row = (await conn.execute(
                    select(_c.c.status, _c.c.updated_at_us).where(_c.c.id == record.id)
                )).first()
                head = (row.status, row.updated_at_us) if row is not None else None
        if fingerprint is not None:
            known = _REPORTS.get(key)
            if known is not None and known[0] == fingerprint:
                _REPORTS.move_to_end(key)
                return known[1], now_us
        elif head is not None:
            live = _LIVE.get(key)
            if live is not None and live[0] == head and now_us - live[1] < LIVE_FOR_US:
                return live[2], live[1]
        # The fingerprint is read before counting: a change meanwhile makes the next read count again.
        report = await status(engine, record)
        if fingerprint is not None and report["status"] == CampaignStatus.FINISHED:
            _remember(_REPORTS, key, (fingerprint, report))
            _remember(_PROGRESS, key, (fingerprint, progress_of(report["states"])))
        elif head is not None:
            _remember(_LIVE, key, (head, now_us, report))
        return report, now_us


async def campaigns_progress(conn: AsyncConnection, tenant_id: int, campaign_ids: Sequence[int]) -> dict[int, Progress]:
    """Each campaign's progress: remembered for finished ones, counted for the others."""
    database = str(conn.engine.url)
    fingerprints = await _fingerprints(conn, tenant_id, campaign_ids) if campaign_ids else {}
    found: dict[int, Progress] = {}
    for campaign_id, fingerprint in fingerprints.items():
        known = _PROGRESS.get((database, tenant_id, campaign_id))
        if known is not None and known[0] == fingerprint:
            found[campaign_id] = known[1]
    counted = await progress_by_campaign(conn, tenant_id, [i for i in campaign_ids if i not in found])
    for campaign_id, progress in counted.items():
        if campaign_id in fingerprints:
            _remember(_PROGRESS, (database, tenant_id, campaign_id), (fingerprints[campaign_id], progress))
    return {**counted, **found}

