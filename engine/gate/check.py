"""`campaign check`: expand and gate a whole audience without sending or recording anything.

The marketer's "prune the list": who would be reached and why the others would not, at
any instant (`at_us`), streaming in batches so a million contacts fit in flat memory.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.definition import CampaignDefinition, validate_against_policy
from engine.db.batches import iter_batches, prefetched
from engine.db.tenants import TenantRecord
from engine.send.campaign_inputs import cap_for, message_for, reason_code
from engine.timeutil import iso_z
from gating import BatchEvaluator, DecisionKind, Defer, compile_policy

CHECK_COLUMNS = ("external_id", "channel", "address", "decision", "reason", "defer_until")


@dataclass(slots=True)
class CheckReport:
    """Counts per (decision, reason); reason is "" for send."""

    counts: Counter = field(default_factory=Counter)
    total: int = 0
    elapsed_s: float = 0.0

    def rows(self) -> list[tuple[str, str, int, float]]:
        """(decision, reason, count, percent), sends first, then by count."""
        order = {DecisionKind.SEND: 0, DecisionKind.DEFER: 1, DecisionKind.SUPPRESS: 2}
        items = sorted(self.counts.items(), key=lambda kv: (order[kv[0][0]], -kv[1], kv[0][1]))
        return [(d, r, n, 100.0 * n / self.total if self.total else 0.0) for (d, r), n in items]

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "elapsed_s": round(self.elapsed_s, 3),
            "counts": [{"decision": d, "reason": r, "count": n, "percent": round(p, 2)} for d, r, n, p in self.rows()],
        }


async def check_campaign(
    engine: AsyncEngine,
    definition: CampaignDefinition,
    tenant: TenantRecord,
    at_us: int,
    *,
    batch_size: int = 1000,
    out: IO[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Gate the whole audience at `at_us`; optionally write one CSV row per recipient."""
    validate_against_policy(definition, tenant.policy, tenant.settings.senders)
    started = time.perf_counter()
    message = message_for(definition)
    policy = compile_policy(tenant.policy, message)
    evaluator = BatchEvaluator(policy, message)
    report = CheckReport()
    counts = report.counts
    channel = definition.channel
    writer = None
    if out is not None:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CHECK_COLUMNS)
    async for batch in prefetched(iter_batches(
        engine, tenant.id, channel, definition.model.audience, at_us, batch_size, cap_for(tenant.policy, channel),
    )):
        decisions = evaluator.evaluate(batch.contacts, batch.ledger, batch.recent_sends, at_us)
        keys = [(d.decision, reason_code(d)) for d in decisions]
        counts.update(keys)
        if writer is not None:
            writer.writerows(
                (row[1], channel, row[5] or "", key[0], key[1], iso_z(d.until_us) if isinstance(d, Defer) else "")
                for row, d, key in zip(batch.contacts, decisions, keys, strict=True)
            )
        report.total += len(decisions)
        if progress is not None:
            progress(len(decisions))
    report.elapsed_s = time.perf_counter() - started
    return report
