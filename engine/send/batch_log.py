"""The per-batch log: one JSON line per audience batch a runner sent (docs/operations.md "Logs").

Metrics aggregate across campaigns on purpose (no campaign label, docs/operations.md "Label
cardinality"); this log is where one campaign's batches are seen one by one: how many were
gated to each outcome, how many went out, and how long the batch took. A line is written
when the last message the runner claimed from the batch has a recorded result, so its
counts are final for this runner (rows another runner holds are that runner's to log).

Fields: `event` ("batch"), `campaign`, `tenant`, `channel`, `batch` (1, 2, ... within this
run), `first_contact_id`, `last_contact_id`, `recipients`, `send`, `suppress`, `defer`,
`suppressed` (reason → n), `sent`, `failed`, `pending` (left for `resume`), `withdrawn`
(claimed, not attempted: the run was stopped), `load_s`, `gate_s`, `duration_s`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.db.batches import Batch
from engine.db.states import DeliveryState

__all__ = ["LOGGER_NAME", "BatchLog", "BatchTally"]

LOGGER_NAME = "consentry.batches"
log = logging.getLogger(LOGGER_NAME)

_OUTCOMES = {DeliveryState.SENT: "sent", DeliveryState.FAILED: "failed", DeliveryState.PENDING: "pending"}


@dataclass(slots=True)
class BatchTally:
    """One batch's counts while its messages are in flight."""

    number: int
    first_contact_id: int
    last_contact_id: int
    recipients: int
    decided: Counter[tuple[str, str]]
    load_s: float
    gate_s: float
    started: float  # perf_counter when its load began
    claimed: int = 0
    settled: Counter[str] = field(default_factory=Counter)
    sealed: bool = False  # every message of the batch this run will dispatch is known

    @property
    def done(self) -> bool:
        return self.sealed and sum(self.settled.values()) >= self.claimed

    def fields(self) -> dict[str, Any]:
        decisions: Counter[str] = Counter()
        suppressed: dict[str, int] = {}
        for (decision, reason), n in self.decided.items():
            decisions[str(decision)] += n
            if str(decision) == "suppress":
                key = str(reason or "none")
                suppressed[key] = suppressed.get(key, 0) + n
        return {
            "batch": self.number, "first_contact_id": self.first_contact_id, "last_contact_id": self.last_contact_id,
            "recipients": self.recipients, "send": decisions["send"], "suppress": decisions["suppress"],
            "defer": decisions["defer"], "suppressed": suppressed,
            "sent": self.settled["sent"], "failed": self.settled["failed"], "pending": self.settled["pending"],
            "withdrawn": self.settled["withdrawn"],
            "load_s": round(self.load_s, 6), "gate_s": round(self.gate_s, 6),
            "duration_s": round(time.perf_counter() - self.started, 6),
        }


class BatchLog:
    """The batches of one run: opened by the producer, settled by the dispatch workers."""

    def __init__(self, campaign: str, tenant: str, channel: str) -> None:
        self._identity = {"campaign": campaign, "tenant": tenant, "channel": channel}
        self._count = 0
        self._open: dict[int, BatchTally] = {}  # by batch number
        self._of_delivery: dict[int, BatchTally] = {}

    def open(
        self, batch: Batch, decided_before: Mapping[tuple[str, str], int],
        decided_after: Mapping[tuple[str, str], int], gate_s: float,
    ) -> BatchTally:
        """A gated and recorded batch; its decisions are the run's tally's growth."""
        self._count += 1
        decided = Counter({key: n - decided_before.get(key, 0) for key, n in decided_after.items()})
        tally = BatchTally(
            self._count, batch.contacts[0][0], batch.last_id, len(batch.contacts), +decided, batch.load_s, gate_s,
            time.perf_counter() - batch.load_s - gate_s,
        )
        self._open[tally.number] = tally
        return tally

    def claimed(self, tally: BatchTally, delivery_id: int) -> None:
        tally.claimed += 1
        self._of_delivery[delivery_id] = tally

    def seal(self, tally: BatchTally) -> None:
        """The producer has handed every claimed message of the batch to the workers."""
        tally.sealed = True
        self._close_if_done(tally)

    def settled(self, delivery_id: int, state: DeliveryState | None) -> None:
        """A claimed message's result was recorded (None: withdrawn, never attempted)."""
        tally = self._of_delivery.pop(delivery_id, None)
        if tally is None:
            return
        tally.settled[_OUTCOMES.get(state, "withdrawn") if state is not None else "withdrawn"] += 1
        self._close_if_done(tally)

    def flush(self) -> None:
        """At the end of a run: log the batches still open (a stopped run), as they stand."""
        for tally in list(self._open.values()):
            self._emit(tally)

    def _close_if_done(self, tally: BatchTally) -> None:
        if tally.done and tally.number in self._open:
            self._emit(tally)

    def _emit(self, tally: BatchTally) -> None:
        del self._open[tally.number]
        if log.isEnabledFor(logging.INFO):
            log.info("batch", extra={"event": "batch", **self._identity, **tally.fields()})
