"""The batch evaluator: gate one batch of a campaign's audience, remembering what was sent.

What it is for: the engine's hot path. It builds the batch's states in one pass and
decides every recipient with the same bit arithmetic as `decide`, adding rule 5
(duplicate address) from its memory of addresses already sent in this campaign. Only
addresses the loader flags as shared are remembered, so memory stays flat however large
the audience. Quiet hours are worked out once per distinct zone set per call (by
build_states, at the call's `now`), not once per recipient.

What it must never do: do IO, read a clock, log, or remember anything but the sent
shared addresses of its own campaign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gating.compiled import CompiledPolicy
from gating.decisions import SEND, Decision
from gating.message import Message
from gating.rules import DUPLICATE, EXPIRED, QUIET, REVIEW, SUPPRESS_BY_BIT
from gating.state import build_states


class BatchEvaluator:
    """Gates the batches of one campaign, in audience order, batch after batch.

    Of several contacts sharing an address, the first in audience order whose decision
    is Send gets the message; later ones get `duplicate_address` (unless an earlier
    rule already fails for them).
    """

    __slots__ = ("policy", "message", "_live", "_sent")

    def __init__(self, policy: CompiledPolicy, message: Message) -> None:
        self.policy = policy
        self.message = message
        self._live = policy.live_for(message)
        self._sent: set[str] = set()

    def mark_sent(self, address: str) -> None:
        """Remember an address that already got this campaign (resuming a campaign)."""
        self._sent.add(address)

    def evaluate(
        self,
        contact_rows: Sequence[tuple],
        ledger_rows: Sequence[tuple],
        recent_sends: Mapping[int, int] | None,
        now_us: int,
    ) -> list[Decision]:
        """One decision per contact row, in input order, at `now_us`."""
        policy = self.policy
        live = self._live
        states = build_states(contact_rows, ledger_rows, policy, recent_sends, now_us=now_us)
        sent = self._sent
        remember = bool(live & DUPLICATE)
        quiet = bool(live & QUIET)
        decisions: list[Decision] = []
        append = decisions.append
        # decide(), unrolled over the state's fields (rules.timed_bits inlined), plus rule 5.
        for _cid, address, shared, failing, hold_after, expires, review_due, zones, _b, _o, _c, _s, _r in states:
            if now_us > hold_after:
                if now_us > expires:
                    failing |= EXPIRED
                if now_us > review_due:
                    failing |= REVIEW
            if remember and shared and address in sent:
                failing |= DUPLICATE
            failing &= live
            if failing:
                append(SUPPRESS_BY_BIT[failing & -failing])
                continue
            decision: Decision = SEND
            if quiet:
                # build_states sets zones, with the verdict at now_us, whenever rule 12 is live.
                assert zones is not None and zones.verdict is not None
                decision = zones.verdict  # worked out once per distinct zone set, at now_us
            if remember and decision is SEND and shared:
                assert address is not None  # rule 1 (no address) is always live and failed above
                sent.add(address)
            append(decision)
        return decisions
