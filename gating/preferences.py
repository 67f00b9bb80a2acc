"""What a person has chosen: the consent layer of the ledger, read exactly as a send reads it.

What it is for: the preference centre, the unsubscribe page and any other reader that shows
or changes a person's grants and revokes asks here, so a ticked box means precisely "a bulk
message of this class, from this party, on this channel would pass the consent rules"
(rules 6, 7 and 9 of DESIGN.md 2). Each choice is a real `build_states` + rule verdict for
that message, not a second reading of the ledger: the page and the campaign cannot disagree.

What it must never do: do IO or read a clock. The caller loads the contact row for each
channel (its address there) and the contact's ledger rows, as a campaign's loader does.
Blocks, the contact-wide opt-out, caps and quiet hours are other layers (rules 3, 6, 11,
12): they are not choices, and a page that unticked a box after a hard bounce would not
round-trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from gating.compiled import CompiledPolicy, compile_policy
from gating.message import BULK, PARTIES, Message
from gating.policy import ClassMode, TenantPolicy
from gating.reasons import Reason
from gating.rules import timed_bits
from gating.state import ContactRow, LedgerRow, build_states

# The consent rules: no grant (opt_in), revoked (opt_out), grant too old (reauthorization).
CONSENT_RULES = Reason.NO_CONSENT.bit | Reason.CONSENT_REVOKED.bit | Reason.CONSENT_EXPIRED.bit


@dataclass(frozen=True, slots=True)
class Choice:
    """One box of the preference centre: `channel` x `class_code` x `party`.

    `consented`: the consent rules let a bulk message through (the box is ticked).
    `revoked`: the latest event covering the three is a revoke, whatever the class's mode
    (an opt_in class with no event at all is not consented, but was never revoked).
    `event_id`: the event that decided it (None: the class's default did).
    """

    channel: str
    class_code: str
    party: str
    mode: ClassMode
    consented: bool
    revoked: bool
    event_id: int | None


def choosable_classes(policy: TenantPolicy) -> list[tuple[str, ClassMode]]:
    """(class, mode) of every class a person can choose: exempt ones need no consent."""
    return [(code, mode) for code, mode in policy.classes.items() if mode is not ClassMode.EXEMPT]


def channel_choices(
    policy: TenantPolicy,
    channel: str,
    contact: ContactRow | tuple,
    ledger: Sequence[LedgerRow | tuple],
    now_us: int,
    parties: Iterable[str] = PARTIES,
    compiler: Callable[[TenantPolicy, Message], CompiledPolicy] = compile_policy,
) -> list[Choice]:
    """Every choosable class x party on `channel` for one contact at `now_us`.

    `contact` is the contact's loader row for `channel` (its address there: events naming
    another address do not count, as in a send); `ledger` its events, any order. `compiler`
    is `compile_policy` or a memo of it: a page asks for some thirty boxes, each its own
    compiled message, and a policy version never changes, so the shell may keep them.
    """
    choices = []
    for class_code, mode in choosable_classes(policy):
        for party in parties:
            compiled = compiler(policy, Message(BULK, channel, class_code, party))
            (state,) = build_states([contact], ledger, compiled, now_us=now_us)
            failing = state.mask
            if now_us > state.hold_after_us:
                failing |= timed_bits(state, now_us)
            choices.append(Choice(
                channel, class_code, party, mode,
                consented=not failing & compiled.live & CONSENT_RULES,
                revoked=bool(state.mask & Reason.CONSENT_REVOKED.bit),
                event_id=state.consent_event,
            ))
    return choices


def fully_revoked(choices: Iterable[Choice]) -> bool:
    """True when every choice was revoked: a further revoke of everything changes nothing.

    Read from explicit revokes, not from `consented`, so that an opt_in class never
    granted still takes a revoke: it keeps the person out if the tenant later makes the
    class opt_out.
    """
    choices = list(choices)
    return bool(choices) and all(choice.revoked for choice in choices)


def review_due(
    policy: TenantPolicy, contact: ContactRow | tuple, ledger: Sequence[LedgerRow | tuple], now_us: int
) -> int | None:
    """When the person's preferences are next due for review (seed 003), as rule 10 reads
    them: the later of the contact's `reviewed_at` and its latest `review` event, plus the
    policy's review period; `ALWAYS` (due since forever) when never reviewed; None when the
    policy has no class a person chooses (nothing to review).

    Whether the tenant *holds* marketing until then (`review.enforce`) does not matter
    here: a desk asks for the review when it is due either way, so rule 10 is read with
    enforcement on, on the first choosable class (review dates are about the person, not a
    class or channel).
    """
    classes = choosable_classes(policy)
    if not classes:
        return None
    enforced = replace(policy, review_enforced=True)
    compiled = compile_policy(enforced, Message(BULK, "email", classes[0][0], PARTIES[0]))
    (state,) = build_states([contact], ledger, compiled, now_us=now_us)
    return state.review_due_us


def is_review_overdue(due_us: int | None, now_us: int) -> bool:
    """Rule 10's comparison: overdue once `now_us` is past the due instant."""
    return due_us is not None and now_us > due_us

