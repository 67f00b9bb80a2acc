"""Ledger resolution: what one consent event says about the message being gated.

What it is for: turning an event `(action, channel, class, party)` into effect flags for
one compiled target (the message's channel, class and party), as a table built once per
campaign, so resolving a contact's ledger is a dict lookup and a few integer compares per
event. `*` covers every value. What it must never do: look at time or order (the state
builder keeps "latest wins"), or read anything but its arguments.

Missing values (None) are read the safe way: a block or revoke that names no channel (or
no class) covers every channel (class), an unblock or grant that names none covers
nothing, and a missing party is `first` (FORMATS.md's default).
"""

from __future__ import annotations

from itertools import product

from gating.message import CHANNELS, PARTIES
from gating.reasons import Reason

ANY = "*"

# Effect flags. A single event can carry several (a grant on sms/* both covers an sms
# marketing message and ends the SMS opt-in wait).
GRANT = 1  # a grant covering the target channel+class+party
REVOKE = 2  # a revoke covering it
SMS_GRANT = 4  # a grant on sms or *, any class or party: ends rule 4's wait
BLOCK = 8  # a block on the target channel (or *)
UNBLOCK = 16
OPT_OUT = 32  # the contact-level marketing flag
OPT_IN = 64
REVIEW = 128

CONSENT = GRANT | REVOKE
BLOCKING = BLOCK | UNBLOCK
OPTING = OPT_OUT | OPT_IN
# Events that may name an address apply only while it is the contact's current address.
# opt_out, opt_in and review are about the person, whatever address they came through.
ADDRESS_SCOPED = CONSENT | SMS_GRANT | BLOCKING

ACTIONS = ("grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review")

# Which effects each rule reads. A compiled policy keeps only the effects of its live
# rules, so an event no live rule cares about costs one dict lookup and nothing more.
EFFECTS_READ_BY = {
    Reason.DO_NOT_CONTACT: BLOCKING,
    Reason.AWAITING_SMS_OPT_IN: SMS_GRANT,
    Reason.OPTED_OUT: OPTING,
    Reason.NO_CONSENT: CONSENT,
    Reason.CONSENT_REVOKED: CONSENT,
    Reason.CONSENT_EXPIRED: CONSENT,
    Reason.REVIEW_OVERDUE: REVIEW,
}


def effects_read(live: int) -> int:
    """The effect flags the rules in the `live` bit set read."""
    flags = 0
    for reason, effects in EFFECTS_READ_BY.items():
        if live & reason.bit:
            flags |= effects
    return flags

_CONTACT_FLAGS = {"opt_out": OPT_OUT, "opt_in": OPT_IN, "review": REVIEW}


def _covers(value: str | None, wanted: str, missing_covers: bool) -> bool:
    if value is None:
        return missing_covers
    return value == wanted or value == ANY


def event_effect(action: str, channel: str | None, class_code: str | None, party: str | None,
                 target: tuple[str, str, str]) -> int:
    """The effect flags of one event on messages to `target` = (channel, class, party)."""
    flags = _CONTACT_FLAGS.get(action)
    if flags is not None:
        return flags
    want_channel, want_class, want_party = target
    if action == "block" or action == "unblock":
        if _covers(channel, want_channel, missing_covers=action == "block"):
            return BLOCK if action == "block" else UNBLOCK
        return 0
    if action != "grant" and action != "revoke":
        return 0  # not an action of the ledger: it says nothing
    loose = action == "revoke"
    covered = (
        _covers(channel, want_channel, loose)
        and _covers(class_code, want_class, loose)
        and (party == want_party or party == ANY or (party is None and want_party == "first"))
    )
    if action == "revoke":
        return REVOKE if covered else 0
    effect = GRANT if covered else 0
    if channel == "sms" or channel == ANY:
        effect |= SMS_GRANT
    return effect


def effect_table(target: tuple[str, str, str], class_codes: tuple[str, ...], relevant: int) -> dict[tuple, int]:
    """Every (action, channel, class, party) a valid ledger can hold, with its effect
    restricted to the `relevant` flags.

    Keys outside the table (a class since removed from the policy, say) are rare; the
    state builder computes them with `event_effect`, which built this table.
    """
    channels = (*CHANNELS, ANY, None)
    classes = (*class_codes, ANY, None)
    parties = (*PARTIES, ANY, None)
    return {key: event_effect(*key, target) & relevant for key in product(ACTIONS, channels, classes, parties)}
