"""Consent state: a contact's ledger reduced to what the rules read, for one compiled message.

What it is for: `build_states` turns one batch of loader rows (docs/architecture.md) into
one `ConsentState` per contact, resolved for the compiled policy's channel, class and
party: which static rules fail (a bit set), from which instant the time-dependent ones
(9 expiry, 10 review) fail, where the recipient is (rule 12), and the ids of the events
that decided each fact so explain can cite them. `decide` then needs no ledger at all.

Resolution: for each fact the most recent event wins, by `occurred_at_us` then
`event_id`, whatever order the rows arrive in; contact-level and address-level events
compete on time alone. Events naming an address other than the contact's current one on
the message's channel kind are ignored (grant, revoke, block, unblock); opt_out, opt_in
and review are about the person and count whatever address they name.

What it must never do: do IO, read a clock, log, or keep anything between calls. It
allocates one small tuple per contact and nothing per event: rows in loader order are
merged in a single pass.

Why a NamedTuple and not a frozen dataclass: a batch builds thousands of these, and a
tuple is immutable, compact and about ten times cheaper to construct than a frozen
dataclass (whose __init__ goes through object.__setattr__ field by field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

from gating.compiled import CompiledPolicy
from gating.decisions import SEND, Defer, Send
from gating.ledger import (
    ADDRESS_SCOPED,
    BLOCK,
    BLOCKING,
    CONSENT,
    GRANT,
    OPT_OUT,
    OPTING,
    SMS_GRANT,
    event_effect,
)
from gating.quiet_hours import load_zone, local_zones, quiet_until
from gating.reasons import Reason

NEVER = (1 << 63) - 1  # an instant no `now_us` passes: the rule never fails on time
ALWAYS = -(1 << 63)  # an instant every `now_us` passes: never reviewed
_NO_TIME = -(1 << 63)  # "no event yet" for latest-wins comparisons
_BEFORE_ALL = float("-inf")  # below every contact id


class ContactRow(NamedTuple):
    """A contact joined to its address on the campaign's channel (loader row shape)."""

    contact_id: int
    external_id: str = ""
    timezone: str | None = None
    lead_source: str | None = None
    reviewed_at_us: int | None = None
    address: str | None = None
    address_valid: bool | None = None
    address_zones: str | None = None
    address_shared: bool = False


class LedgerRow(NamedTuple):
    """One consent event (loader row shape); `*` may stand for channel, class or party."""

    contact_id: int
    event_id: int
    action: str
    channel: str | None
    class_code: str | None
    party: str | None
    address: str | None
    occurred_at_us: int


class ConsentState(NamedTuple):
    """One contact, resolved for one compiled message.

    `mask` has bit n set when rule n fails whatever the time (rules 1-4, 6-8, 11; only
    those live for the policy are computed). Rule 9 fails once `now_us >
    consent_expires_us`, rule 10 once `now_us > review_due_us`; `hold_after_us` is the
    earlier of the two, so `decide` compares once. `zones` is where the recipient is, with
    the quiet-hours verdict at the instant the states were built for (only when quiet
    hours can apply; shared by every contact in the same zones). The `*_event` fields are the ids of the events
    that decided each fact (None: no event did): the latest block/unblock on the channel,
    the latest opt_out/opt_in, the latest grant/revoke covering channel+class+party, the
    latest SMS grant (rule 4), and the review event that set the review date.
    """

    contact_id: int
    address: str | None
    shared: bool
    mask: int
    hold_after_us: int
    consent_expires_us: int
    review_due_us: int
    zones: LocalZones | None
    block_event: int | None
    opt_event: int | None
    consent_event: int | None
    sms_grant_event: int | None
    review_event: int | None


@dataclass(frozen=True, slots=True)
class LocalZones:
    """Where a recipient is, and rule 12's verdict there at `checked_at_us`.

    One instance per distinct (contact timezone, phone zones) pair in a batch. `verdict`
    is SEND or the Defer for `checked_at_us` (None when the states were built without an
    instant); `decide` at that instant reads it, at any other instant works it out.
    """

    zones: tuple[ZoneInfo, ...]
    checked_at_us: int | None = None
    verdict: Send | Defer | None = None


_USE_PHONE = LocalZones(())  # cache marker: the contact names no valid zone of its own

_NO_ADDRESS = Reason.NO_ADDRESS.bit
_INVALID_ADDRESS = Reason.INVALID_ADDRESS.bit
_DO_NOT_CONTACT = Reason.DO_NOT_CONTACT.bit
_AWAITING = Reason.AWAITING_SMS_OPT_IN.bit
_OPTED_OUT = Reason.OPTED_OUT.bit
_NO_CONSENT = Reason.NO_CONSENT.bit
_REVOKED = Reason.CONSENT_REVOKED.bit
_EXPIRED = Reason.CONSENT_EXPIRED.bit
_REVIEW = Reason.REVIEW_OVERDUE.bit
_CAPPED = Reason.FREQUENCY_CAPPED.bit
_QUIET = Reason.QUIET_HOURS.bit

_CONTACT_ID = itemgetter(0)


def build_states(
    contact_rows: Sequence[tuple],
    ledger_rows: Iterable[tuple],
    policy: CompiledPolicy,
    recent_sends: Mapping[int, int] | None = None,
    *,
    now_us: int | None = None,
) -> list[ConsentState]:
    """One `ConsentState` per contact row, in input order; a pure function of the rows.

    `recent_sends` maps contact_id to its recent bulk sends on the channel (rule 11).
    `now_us`, when given, hides ledger events dated after it (the loader already does).
    Rows in loader order (contacts by ascending id, events grouped by ascending contact id)
    are merged in one pass; any other order is sorted first and gives the same states.
    """
    ledger = ledger_rows if isinstance(ledger_rows, list | tuple) else list(ledger_rows)
    states = _build(contact_rows, ledger, None, policy, recent_sends or {}, NEVER if now_us is None else now_us)
    if states is None:  # not in loader order: group the events by contact and go again
        ledger = sorted(ledger, key=_CONTACT_ID)
        starts: dict[int, int] = {}
        for index, row in enumerate(ledger):
            starts.setdefault(row[0], index)
        states = _build(contact_rows, ledger, starts, policy, recent_sends or {}, NEVER if now_us is None else now_us)
        assert states is not None
    return states


def _build(
    contact_rows: Sequence[tuple],
    ledger: Sequence[tuple],
    starts: dict[int, int] | None,
    policy: CompiledPolicy,
    recent: Mapping[int, int],
    now_us: int,
) -> list[ConsentState] | None:
    """The hot loop. With `starts` None it merges contacts and events, both in loader order,
    and returns None as soon as it sees they are not; otherwise `starts` gives the index of
    each contact's first event in `ledger`, which is grouped by contact."""
    widest = policy.widest
    awaiting_live = widest & _AWAITING
    excluded = policy.excluded_sources
    reauthorization = policy.reauthorization_us if widest & _EXPIRED else None
    review_period = policy.review_period_us if widest & _REVIEW else None
    cap = policy.cap.max if widest & _CAPPED and policy.cap is not None else None
    quiet_live = widest & _QUIET
    table = policy._effects
    relevant = policy.relevant_effects
    target = policy.target
    zone_cache: dict[str | None, LocalZones] = {}  # by the contact's timezone (_USE_PHONE: none valid)
    phone_cache: dict[str | None, LocalZones] = {}  # by the phone's zones
    checked_at_us = None if now_us == NEVER else now_us
    source_cache: dict[str | None, bool] = {}
    new = tuple.__new__
    states: list[ConsentState] = []
    append = states.append
    size = len(ledger)
    j = 0
    previous = last = _BEFORE_ALL
    for cid, _external_id, timezone, lead_source, reviewed_at, own, valid, zones, shared in contact_rows:
        # This contact's events are the run ledger[j], ledger[j + 1], ... with its id.
        if starts is None:
            if cid <= previous:
                return None
            previous = cid
            while j < size and ledger[j][0] < cid:  # events of contacts outside the batch
                if ledger[j][0] < last:
                    return None
                last = ledger[j][0]
                j += 1
        else:
            j = starts.get(cid, size)

        # Latest wins, per fact: (time, event id) of the deciding event, and its value.
        ct = st = bt = ot = rt = _NO_TIME
        cev = sev = bev = oev = rev = None
        grant = blocked = out = 0
        while j < size:
            event = ledger[j]
            if event[0] != cid:
                break
            j += 1
            last, eid, action, channel, class_code, party, address, at = event  # last = cid
            if at > now_us:
                continue
            effect = table.get((action, channel, class_code, party))
            if effect is None:
                effect = event_effect(action, channel, class_code, party, target) & relevant
            if not effect or (address is not None and address != own and effect & ADDRESS_SCOPED):
                continue
            # One action per event, so one branch; only a grant carries two flags.
            if effect & CONSENT:
                if at > ct or (at == ct and eid > cev):
                    ct, cev, grant = at, eid, effect & GRANT
                if effect & SMS_GRANT and (at > st or (at == st and eid > sev)):
                    st, sev = at, eid
            elif effect & BLOCKING:
                if at > bt or (at == bt and eid > bev):
                    bt, bev, blocked = at, eid, effect & BLOCK
            elif effect & OPTING:
                if at > ot or (at == ot and eid > oev):
                    ot, oev, out = at, eid, effect & OPT_OUT
            elif effect & SMS_GRANT:
                if at > st or (at == st and eid > sev):
                    st, sev = at, eid
            elif at > rt or (at == rt and eid > rev):  # REVIEW
                rt, rev = at, eid

        # The static rules' bits.
        if not own:
            mask = _NO_ADDRESS
        elif not valid:
            mask = _INVALID_ADDRESS
        else:
            mask = 0
        if blocked:
            mask |= _DO_NOT_CONTACT
        if out:
            mask |= _OPTED_OUT
        if not grant:  # no covering event, or the latest one is a revoke
            mask |= _NO_CONSENT if cev is None else _NO_CONSENT | _REVOKED
        if awaiting_live and sev is None:
            waits = source_cache.get(lead_source)
            if waits is None:
                waits = source_cache[lead_source] = lead_source_waits(lead_source, excluded)
            if waits:
                mask |= _AWAITING
        if cap is not None and recent.get(cid, 0) >= cap:
            mask |= _CAPPED

        # The instants after which the timed rules fail.
        expires = NEVER
        if reauthorization is not None and grant:
            expires = ct + reauthorization
        review_due = NEVER
        if review_period is not None:
            if reviewed_at is not None and reviewed_at >= rt:
                review_due, rev = reviewed_at + review_period, None  # the contact record decides
            elif rt != _NO_TIME:
                review_due = rt + review_period
            else:
                review_due = ALWAYS

        local = None
        if quiet_live:  # the contact's own zone if it names one, else its phone's zones
            local = zone_cache.get(timezone)
            if local is None:
                local = zone_cache[timezone] = _where(timezone, None, policy, checked_at_us, own_only=True)
            if local is _USE_PHONE:
                local = phone_cache.get(zones)
                if local is None:
                    local = phone_cache[zones] = _where(None, zones, policy, checked_at_us)
        append(new(ConsentState, (
            cid, own, shared, mask, expires if expires < review_due else review_due, expires, review_due,
            local, bev, oev, cev, sev, rev,
        )))
    if starts is None:
        while j < size:  # trailing events must still be in order, or some were skipped
            if ledger[j][0] < last:
                return None
            last = ledger[j][0]
            j += 1
    return states


def _where(timezone: str | None, phone_zones: str | None, policy: CompiledPolicy, at_us: int | None,
           own_only: bool = False) -> LocalZones:
    if own_only and load_zone(timezone) is None:
        return _USE_PHONE
    zones = local_zones(timezone, phone_zones, policy.zone)
    if at_us is None or policy.quiet is None:
        return LocalZones(zones)
    until = quiet_until(policy.quiet, zones, at_us)
    return LocalZones(zones, at_us, SEND if until is None else Defer(until, Reason.QUIET_HOURS))


def lead_source_waits(lead_source: str | None, excluded: frozenset[str]) -> bool:
    """Rule 4: does this lead source still need the opt-in text? Excluded sources match
    case-insensitively; a contact without a lead source is never excluded."""
    return not lead_source or lead_source.lower() not in excluded
