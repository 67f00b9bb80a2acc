"""Explain: every rule of the decision table, its verdict for one recipient, and its evidence.

What it is for: answering "why did (or would) this contact get this message?" for the
marketer, the salesperson and support. It walks `rules.RULES` over the same
`ConsentState` bits `decide` uses, so its first failure (or the defer) is `decide`'s
result by construction; the details and cited event ids are presentation on top.

What it must never do: decide anything on its own terms, read a clock, do IO or log.
It is not on the hot path: clarity over speed here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gating.compiled import CompiledPolicy
from gating.decisions import SEND, Decision, Defer, suppressed
from gating.message import ADDRESS_KIND, Message
from gating.quiet_hours import EPOCH, quiet_until, to_local
from gating.reasons import Reason
from gating.rules import DUPLICATE, RULES, timed_bits
from gating.state import ALWAYS, NEVER, ConsentState, build_states

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """One rule's outcome: `verdict` is pass, fail or skip; `event_ids` are its evidence."""

    number: int
    code: str
    verdict: str
    detail: str
    event_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "code": str(self.code),
            "verdict": self.verdict,
            "detail": self.detail,
            "event_ids": list(self.event_ids),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision and every rule's verdict, in table order."""

    decision: Decision
    rules: tuple[RuleVerdict, ...]

    @property
    def reason(self) -> Reason | None:
        return self.decision.reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"decision": {decision, reason, until_us, defer_until}, "rules": [...]}."""
        until = getattr(self.decision, "until_us", None)
        return {
            "decision": {
                "decision": self.decision.decision,
                "reason": None if self.decision.reason is None else str(self.decision.reason),
                "until_us": until,
                "defer_until": None if until is None else format_instant(until),
            },
            "rules": [rule.to_dict() for rule in self.rules],
        }


def format_instant(instant_us: int) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (FORMATS.md's defer_until)."""
    return (EPOCH + timedelta(microseconds=instant_us)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Case:
    """Everything a rule's description may cite."""

    row: Sequence[Any]
    state: ConsentState
    message: Message
    policy: CompiledPolicy
    now_us: int
    events: dict[int, Sequence[Any]]
    recent_sends: int
    seen_addresses: Collection[str]

    def at(self, event_id: int | None) -> str:
        return format_instant(self.events[event_id][7]) if event_id in self.events else "?"

    def target(self) -> str:
        return f"{self.message.channel}/{self.message.class_code}/{self.message.party}"


def explain(
    contact_row: tuple,
    ledger_rows: Sequence[tuple],
    message: Message,
    policy: CompiledPolicy,
    now_us: int,
    recent_sends: int = 0,
    seen_addresses: Collection[str] = (),
) -> Explanation:
    """Explain the decision for one contact row and its ledger rows at `now_us`.

    `recent_sends` is the contact's recent bulk sends on the channel (rule 11);
    `seen_addresses` the addresses that already got the campaign (rule 5; empty: the
    message is judged outside any campaign).
    """
    contact_id = contact_row[0]
    own = [row for row in ledger_rows if row[0] == contact_id]
    state = build_states([contact_row], own, policy, {contact_id: recent_sends}, now_us=now_us)[0]
    live = policy.live_for(message)
    failing = state.mask | timed_bits(state, now_us)
    if live & DUPLICATE and state.address and state.address in seen_addresses:
        failing |= DUPLICATE
    case = _Case(contact_row, state, message, policy, now_us, {row[1]: row for row in own}, recent_sends, seen_addresses)
    verdicts = []
    decision: Decision | None = None
    for rule in RULES:
        skipped = rule.skip_reason(message, policy)
        if skipped is not None:
            verdicts.append(RuleVerdict(rule.number, rule.reason, SKIP, skipped))
            continue
        if rule.reason is Reason.QUIET_HOURS:
            # Not skipped: the tenant has quiet hours (NO_QUIET_HOURS), so build_states set zones.
            assert policy.quiet is not None and state.zones is not None
            until = quiet_until(policy.quiet, state.zones.zones, now_us)
            verdict, detail = _quiet_hours(case, until)
            if until is not None and decision is None:
                decision = Defer(until, Reason.QUIET_HOURS)
            verdicts.append(RuleVerdict(rule.number, rule.reason, verdict, detail))
            continue
        failed = bool(failing & rule.bit)
        verdict, detail, event_ids = _DESCRIBE[rule.reason](case, failed)
        verdicts.append(RuleVerdict(rule.number, rule.reason, verdict, detail, tuple(i for i in event_ids if i is not None)))
        if failed and decision is None:
            decision = suppressed(rule.reason)
    return Explanation(SEND if decision is None else decision, tuple(verdicts))


# -- one description per rule: (verdict, detail, event ids) ------------------------------

Described = tuple[str, str, tuple[int | None, ...]]


def _no_address(case: _Case, failed: bool) -> Described:
    kind = ADDRESS_KIND.get(case.message.channel, case.message.channel)
    if failed:
        return FAIL, f"no {kind} address", ()
    return PASS, f"{kind} address {case.state.address}", ()


def _invalid_address(case: _Case, failed: bool) -> Described:
    if not case.state.address:
        return SKIP, "no address to check", ()
    if failed:
        return FAIL, f"{case.state.address} is not a valid address", ()
    return PASS, f"{case.state.address} is valid", ()


def _do_not_contact(case: _Case, failed: bool) -> Described:
    event = case.state.block_event
    if failed:
        return FAIL, f"blocked on {case.message.channel} since {case.at(event)} (event #{event})", (event,)
    if event is not None:
        return PASS, f"unblocked on {case.message.channel} since {case.at(event)} (event #{event})", (event,)
    return PASS, f"no block on {case.message.channel}", ()


def _awaiting_sms_opt_in(case: _Case, failed: bool) -> Described:
    event = case.state.sms_grant_event
    source = case.row[3]
    if failed:
        return FAIL, f"no SMS grant yet and lead source {source!r} is not excluded: only the opt-in request may be sent", ()
    if event is not None:
        return PASS, f"SMS grant since {case.at(event)} (event #{event})", (event,)
    return PASS, f"lead source {source!r} is excluded from the opt-in text", ()


def _duplicate_address(case: _Case, failed: bool) -> Described:
    if failed:
        return FAIL, f"{case.state.address} already got this campaign", ()
    if not case.seen_addresses:
        return SKIP, "not in a campaign", ()
    return PASS, f"{case.state.address} has not had this campaign", ()


def _opted_out(case: _Case, failed: bool) -> Described:
    event = case.state.opt_event
    if failed:
        return FAIL, f"opted out of marketing since {case.at(event)} (event #{event})", (event,)
    if event is not None:
        return PASS, f"opted back in since {case.at(event)} (event #{event})", (event,)
    return PASS, "never opted out", ()


def _no_consent(case: _Case, failed: bool) -> Described:
    event = case.state.consent_event
    if failed and event is not None:
        return FAIL, f"the grant for {case.target()} was revoked at {case.at(event)} (event #{event})", (event,)
    if failed:
        return FAIL, f"no grant covers {case.target()}", ()
    return PASS, f"grant for {case.target()} since {case.at(event)} (event #{event})", (event,)


def _consent_revoked(case: _Case, failed: bool) -> Described:
    event = case.state.consent_event
    if failed:
        return FAIL, f"{case.target()} revoked at {case.at(event)} (event #{event})", (event,)
    if event is not None:
        return PASS, f"latest event for {case.target()} is a grant of {case.at(event)} (event #{event})", (event,)
    return PASS, f"nothing revoked for {case.target()}", ()


def _consent_expired(case: _Case, failed: bool) -> Described:
    event = case.state.consent_event
    expires = case.state.consent_expires_us
    # Only described when rule 9 applies, i.e. not skipped by NO_REAUTHORIZATION.
    assert case.policy.reauthorization_us is not None
    days = case.policy.reauthorization_us // 86_400_000_000
    if failed:
        return FAIL, f"grant of {case.at(event)} (event #{event}) is older than {days} days: expired {format_instant(expires)}", (event,)
    if expires == NEVER:
        return PASS, "no grant to expire", ()
    return PASS, f"grant of {case.at(event)} (event #{event}) is good until {format_instant(expires)}", (event,)


def _review_overdue(case: _Case, failed: bool) -> Described:
    due = case.state.review_due_us
    event = case.state.review_event
    days = case.policy.review_period_us // 86_400_000_000
    if due == ALWAYS:
        return FAIL, "preferences never reviewed", ()
    source = f"event #{event}" if event is not None else "contact record"
    reviewed = format_instant(due - case.policy.review_period_us)
    if failed:
        return FAIL, f"last reviewed {reviewed} ({source}), more than {days} days ago", (event,)
    return PASS, f"reviewed {reviewed} ({source}); next review due {format_instant(due)}", (event,)


def _frequency_capped(case: _Case, failed: bool) -> Described:
    cap = case.policy.cap
    assert cap is not None  # only described when rule 11 applies, i.e. not skipped by NO_CAP
    hours = cap.window_us // 3_600_000_000
    sent = f"{case.recent_sends} bulk {case.message.channel} message(s) in the last {hours} h"
    if failed:
        return FAIL, f"{sent}: cap of {cap.max} reached", ()
    return PASS, f"{sent}, cap {cap.max}", ()


def _quiet_hours(case: _Case, until: int | None) -> tuple[str, str]:
    window = case.policy.quiet
    assert case.state.zones is not None  # rule 12 applies (see explain), so build_states set zones
    local = ", ".join(f"{to_local(case.now_us, zone):%H:%M} {zone.key}" for zone in case.state.zones.zones)
    if until is not None:
        return FAIL, f"local time {local} is inside quiet hours {window}: defer until {format_instant(until)}"
    return PASS, f"local time {local} is outside quiet hours {window}"


_DESCRIBE: dict[Reason, Callable[[_Case, bool], Described]] = {
    Reason.NO_ADDRESS: _no_address,
    Reason.INVALID_ADDRESS: _invalid_address,
    Reason.DO_NOT_CONTACT: _do_not_contact,
    Reason.AWAITING_SMS_OPT_IN: _awaiting_sms_opt_in,
    Reason.DUPLICATE_ADDRESS: _duplicate_address,
    Reason.OPTED_OUT: _opted_out,
    Reason.NO_CONSENT: _no_consent,
    Reason.CONSENT_REVOKED: _consent_revoked,
    Reason.CONSENT_EXPIRED: _consent_expired,
    Reason.REVIEW_OVERDUE: _review_overdue,
    Reason.FREQUENCY_CAPPED: _frequency_capped,
}
