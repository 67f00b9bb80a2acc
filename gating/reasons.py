"""Reason codes: why a message was held back, in the order the rules are checked.

What it is for: the one spelling of every reason code (they reach CSV exports, metrics
labels and the explain output) and each code's rule number. The members are declared in
the order of the decision table of DESIGN.md section 2, so a reason's rule number is its
position; the rule table, the state bits and "first failure wins" all derive from it.
What it must never do: grow a member out of order, or rename a value (the values are a
public format).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a recipient was suppressed (or, for `QUIET_HOURS`, deferred)."""

    NO_ADDRESS = "no_address"
    INVALID_ADDRESS = "invalid_address"
    DO_NOT_CONTACT = "do_not_contact"
    AWAITING_SMS_OPT_IN = "awaiting_sms_opt_in"
    DUPLICATE_ADDRESS = "duplicate_address"
    OPTED_OUT = "opted_out"
    NO_CONSENT = "no_consent"
    CONSENT_REVOKED = "consent_revoked"
    CONSENT_EXPIRED = "consent_expired"
    REVIEW_OVERDUE = "review_overdue"
    FREQUENCY_CAPPED = "frequency_capped"
    QUIET_HOURS = "quiet_hours"

    @property
    def rule(self) -> int:
        """The rule number in DESIGN.md section 2 (1-12)."""
        return _RULE_NUMBER[self]

    @property
    def bit(self) -> int:
        """`1 << rule`: lower rules are lower bits, so the lowest set bit is the first failure."""
        return 1 << _RULE_NUMBER[self]


_RULE_NUMBER = {reason: number for number, reason in enumerate(Reason, start=1)}
