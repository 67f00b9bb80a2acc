"""`campaign check`: expand and gate a whole audience without sending or recording anything.

The marketer's "prune the list": who would be reached and why the others would not, at
any instant (`at_us`), streaming in batches so a million contacts fit in flat memory.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.definition import CampaignDefinition, validate_against_policy
from engine.db.batches import iter_batches, prefetched, stream_batches
from engine.db.tenants import TenantRecord
from engine.send.campaign_inputs import cap_for, message_for, reason_code
from engine.timeutil import iso_z
from gating import BatchEvaluator, Decision, DecisionKind, Defer, compile_policy

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


_EXTERNAL_ID = itemgetter(1)
_ADDRESS = itemgetter(5)


class _Labels:
    """What a decision prints as, worked out once per decision object.

    Decisions are mostly shared objects (one SEND, one Suppress per reason, one Defer per
    zone set and window: gating.batch), so a million recipients have a handful. Keyed by
    id(), with the decision kept alive alongside so an id is never reused while known.
    """

    def __init__(self) -> None:
        self.keys: dict[int, tuple[Decision, tuple[str, str]]] = {}
        # id(decision) -> cell, for the decision, reason and defer_until columns.
        self.columns: tuple[dict[int, str], dict[int, str], dict[int, str]] = ({}, {}, {})

    def key(self, ident: int, decisions: list[Decision]) -> tuple[str, str]:
        """The (decision, reason) of the decision `ident` among `decisions`."""
        known = self.keys.get(ident)
        if known is None:
            decision = next(d for d in decisions if id(d) == ident)
            key = (decision.decision, reason_code(decision))
            known = self.keys[ident] = (decision, key)
            until = iso_z(decision.until_us) if isinstance(decision, Defer) else ""
            for column, cell in zip(self.columns, (*key, until), strict=True):
                column[ident] = cell
        return known[1]

    def forget_if_many(self) -> None:
        # Flat memory even if some gating path made a fresh object per recipient.
        if len(self.keys) > 10_000:
            self.keys.clear()
            for column in self.columns:
                column.clear()


# A cell with one of these needs the csv module's quoting; no other cell does.
_NEEDS_QUOTING = re.compile(r'[,"\r\n]')


def _write_rows(
    out: IO[str], writer: Any, contacts: Sequence[tuple], channel: str,
    columns: tuple[dict[int, str], dict[int, str], dict[int, str]], ids: list[int],
) -> None:
    """A batch's CSV rows, column by column with C-level maps: a million rows are written here.

    The external ids and addresses are the only cells that are not ours; when none of
    them needs quoting (the usual case), a batch is formatted as one string, which is
    what the csv module would write: each row's cells joined by commas, the rows by
    newlines (0.26 µs a row, against 0.88 for a format string per row and 1.6 for the
    csv module). Any cell that needs quoting sends the batch through the csv module.
    None (no address) is an empty cell either way.
    """
    external_ids = list(map(_EXTERNAL_ID, contacts))
    addresses = [address or "" for address in map(_ADDRESS, contacts)]
    decisions, reasons, until = (map(column.__getitem__, ids) for column in columns)
    if _NEEDS_QUOTING.search("\x00".join(external_ids)) or _NEEDS_QUOTING.search("\x00".join(addresses)):
        writer.writerows(zip(external_ids, repeat(channel), addresses, decisions, reasons, until))
        return
    # A channel is one of gating's names, which never need quoting.
    if external_ids:
        out.write("\n".join(map(",".join, zip(external_ids, repeat(channel), addresses, decisions, reasons, until))))
        out.write("\n")


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
    # PostgreSQL streams the audience from one cursor in one snapshot; SQLite, whose reads
    # are local calls with no round trip, pages as a send does (docs/database.md).
    load = stream_batches if engine.dialect.name == "postgresql" else iter_batches
    labels = _Labels()
    async for batch in prefetched(load(
        engine, tenant.id, channel, definition.model.audience, at_us, batch_size, cap_for(tenant.policy, channel),
    )):
        decisions = evaluator.evaluate(batch.contacts, batch.ledger, batch.recent_sends, at_us)
        ids = list(map(id, decisions))
        for ident, n in Counter(ids).items():
            counts[labels.key(ident, decisions)] += n
        if writer is not None:
            assert out is not None
            _write_rows(out, writer, batch.contacts, channel, labels.columns, ids)
        report.total += len(decisions)
        if progress is not None:
            progress(len(decisions))
        labels.forget_if_many()
    report.elapsed_s = time.perf_counter() - started
    return report
