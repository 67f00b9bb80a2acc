"""The decision table of DESIGN.md section 2, and `decide`.

What it is for: the one place that says which rules exist, in which order, and to which
messages each applies. `RULES` is that table; compiling a policy turns its scope column
into a bit set of live rules, `decide` and the batch evaluator pick the first failure as
the lowest set bit of (recipient's failing rules & live rules), and `explain` walks the
same rows. What it must never do: read a clock, log, look at raw ledger rows (the state
builder has already reduced them), or keep anything between calls.

How a verdict is computed (bit n = rule n, from `Reason.bit`):

    failing = state.mask                      # rules 1-4, 6-8, 11: known when the state is built
            | timed bits                      # rules 9, 10: now_us past a precomputed instant
            | duplicate bit                   # rule 5: the batch evaluator's memory
    first = failing & live                    # live: rules whose scope includes the message
    first & -first                            # the lowest set bit: the first rule that fails
    none failing -> rule 12 (quiet hours) -> Defer, else Send
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gating.decisions import SEND, Decision, Defer, suppressed
from gating.message import BULK, PHONE_CHANNELS, Message
from gating.policy import ClassMode
from gating.quiet_hours import quiet_until
from gating.reasons import Reason

if TYPE_CHECKING:
    from gating.compiled import CompiledPolicy
    from gating.state import ConsentState


@dataclass(frozen=True, slots=True)
class Guard:
    """A reason a rule does not apply to a message at all; `text` is shown by explain."""

    text: str
    skips: Callable[[Message, CompiledPolicy], bool]

    def describe(self, message: Message) -> str:
        return self.text.format(channel=message.channel, class_code=message.class_code)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the decision table: the reason it reports, when it fails, where it applies."""

    reason: Reason
    fails_when: str
    guards: tuple[Guard, ...] = ()

    @property
    def number(self) -> int:
        return self.reason.rule

    @property
    def bit(self) -> int:
        return self.reason.bit

    def skip_reason(self, message: Message, policy: CompiledPolicy) -> str | None:
        """Why this rule does not apply to `message` under `policy`, or None if it does."""
        for guard in self.guards:
            if guard.skips(message, policy):
                return guard.describe(message)
        return None


NOT_SMS = Guard("{channel} message: rule 4 is for SMS", lambda m, p: m.channel != "sms")
NO_SMS_OPT_IN = Guard("tenant does not require SMS opt-in", lambda m, p: not p.sms_opt_in_required)
OPT_IN_REQUEST = Guard("this is the opt-in request, the one text allowed", lambda m, p: m.is_opt_in_request)
INDIVIDUAL = Guard("individual message", lambda m, p: m.kind != BULK)
# Quiet hours protect the recipient's night from automated texts: a salesperson's reply is
# a person answering a person, but the opt-in request is sent by the engine to a lead who
# has not yet agreed to texts at all, and waits for the morning like any campaign text.
PERSONAL_REPLY = Guard(
    "individual reply: a person answering a person", lambda m, p: m.kind != BULK and not m.is_opt_in_request
)
EXEMPT = Guard("class {class_code!r} is exempt", lambda m, p: p.is_exempt)
NO_GRANT_NEEDED = Guard("class {class_code!r} is opt_out: no grant needed", lambda m, p: not p.requires_grant)
GRANT_NEEDED = Guard(
    "class {class_code!r} is opt_in: a revoke leaves no grant (rule 7)", lambda m, p: p.mode is not ClassMode.OPT_OUT
)
NO_REAUTHORIZATION = Guard("no reauthorization period for {channel}", lambda m, p: p.reauthorization_us is None)
REVIEW_NOT_ENFORCED = Guard("tenant does not hold marketing until reviewed", lambda m, p: not p.review_enforced)
NO_CAP = Guard("no frequency cap on {channel}", lambda m, p: p.cap is None)
NOT_PHONE = Guard("{channel} is never deferred: quiet hours are for SMS and voice", lambda m, p: m.channel not in PHONE_CHANNELS)
NO_QUIET_HOURS = Guard("tenant has no quiet hours", lambda m, p: p.quiet is None)

_CONSENT_SCOPE = (INDIVIDUAL, EXEMPT)

RULES: tuple[Rule, ...] = (
    Rule(Reason.NO_ADDRESS, "the contact has no address on the channel"),
    Rule(Reason.INVALID_ADDRESS, "the address does not parse (email syntax, E.164)"),
    Rule(Reason.DO_NOT_CONTACT, "the address, or the contact on that channel, is blocked"),
    Rule(Reason.AWAITING_SMS_OPT_IN, "no SMS grant yet and the lead source is not excluded",
         (NOT_SMS, NO_SMS_OPT_IN, OPT_IN_REQUEST)),
    Rule(Reason.DUPLICATE_ADDRESS, "the same address already got this campaign", (INDIVIDUAL,)),
    Rule(Reason.OPTED_OUT, "the contact opted out of marketing", _CONSENT_SCOPE),
    Rule(Reason.NO_CONSENT, "no grant in force covers channel+class+party", (*_CONSENT_SCOPE, NO_GRANT_NEEDED)),
    Rule(Reason.CONSENT_REVOKED, "the latest event covering channel+class+party is a revoke",
         (*_CONSENT_SCOPE, GRANT_NEEDED)),
    Rule(Reason.CONSENT_EXPIRED, "the covering grant is older than the reauthorization period",
         (*_CONSENT_SCOPE, NO_GRANT_NEEDED, NO_REAUTHORIZATION)),
    Rule(Reason.REVIEW_OVERDUE, "preferences never reviewed, or not within the review period",
         (*_CONSENT_SCOPE, REVIEW_NOT_ENFORCED)),
    Rule(Reason.FREQUENCY_CAPPED, "the cap of bulk messages in the window is reached", (*_CONSENT_SCOPE, NO_CAP)),
    Rule(Reason.QUIET_HOURS, "recipient-local time is inside quiet hours (defer to the window end)",
         (PERSONAL_REPLY, NOT_PHONE, NO_QUIET_HOURS)),
)
assert tuple(rule.reason for rule in RULES) == tuple(Reason), "the table follows DESIGN.md order"

# Rules whose verdict depends on now_us (9, 10), on the batch (5) or is a defer (12).
EXPIRED = Reason.CONSENT_EXPIRED.bit
REVIEW = Reason.REVIEW_OVERDUE.bit
DUPLICATE = Reason.DUPLICATE_ADDRESS.bit
QUIET = Reason.QUIET_HOURS.bit

# The first failing rule's decision, by its bit. Quiet hours is never in a failing mask.
SUPPRESS_BY_BIT = {reason.bit: suppressed(reason) for reason in Reason if reason is not Reason.QUIET_HOURS}


def live_mask(message: Message, policy: CompiledPolicy) -> int:
    """The bits of the rules that apply to `message` under `policy`."""
    mask = 0
    for rule in RULES:
        if rule.skip_reason(message, policy) is None:
            mask |= rule.bit
    return mask


def timed_bits(state: ConsentState, now_us: int) -> int:
    """Rules 9 and 10, which fail once `now_us` passes an instant fixed at build time."""
    bits = 0
    if now_us > state.consent_expires_us:
        bits |= EXPIRED
    if now_us > state.review_due_us:
        bits |= REVIEW
    return bits


def decide(state: ConsentState, message: Message, policy: CompiledPolicy, now_us: int) -> Decision:
    """Send, Suppress(reason) or Defer(until_us, reason) for one recipient at `now_us`.

    `state` must come from `build_states` with this `policy`; `message` is the policy's
    message or one that differs only in kind or `is_opt_in_request`. Rule 5 (duplicate
    address) needs the campaign's memory: use `BatchEvaluator` for it.
    """
    live = policy.live if message is policy.message else policy.live_for(message)
    failing = state.mask
    if now_us > state.hold_after_us:
        failing |= timed_bits(state, now_us)
    failing &= live
    if failing:
        return SUPPRESS_BY_BIT[failing & -failing]
    if live & QUIET:
        # Rule 12 is live only if the tenant has quiet hours (NO_QUIET_HOURS), and states
        # built for this policy carry zones whenever it is live for any variant (`widest`).
        assert policy.quiet is not None and state.zones is not None
        local = state.zones
        if local.checked_at_us == now_us and local.verdict is not None:
            return local.verdict
        until = quiet_until(policy.quiet, local.zones, now_us)
        if until is not None:
            return Defer(until, Reason.QUIET_HOURS)
    return SEND
