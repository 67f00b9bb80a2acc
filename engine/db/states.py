"""The vocabulary of the deliveries and campaigns tables, as enums.

`StrEnum`s: a member is stored and compared as its text, so rows written by any version
read back as the same member, and a typo is an AttributeError instead of a silent miss.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    """Where one delivery row stands.

    pending → sending (claimed by one runner, the transport may be talking) → sent | failed;
    a transient failure goes back to pending. suppressed and deferred come from gating;
    a deferred row is gated again when it is due.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"

# What gating may (re)decide: a row nobody holds and that has no final outcome.
OPEN_STATES = (DeliveryState.PENDING, DeliveryState.DEFERRED)


class Purpose(StrEnum):
    """What a delivery row carries: the campaign's message, or the SMS opt-in request sent in
    its place to a lead who has not said YES (DESIGN.md rule 4)."""

    CAMPAIGN = "campaign"
    OPT_IN_REQUEST = "opt_in_request"


class Kind(StrEnum):
    BULK = "bulk"
    INDIVIDUAL = "individual"


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # created over the API, not launched yet: nothing is gated or sent
    RUNNING = "running"
    INCOMPLETE = "incomplete"  # some recipients are still pending (transport errors, a stop)
    WAITING = "waiting"  # only deferred recipients are left (quiet hours)
    FINISHED = "finished"
    # Set by an operator (API pause / cancel), never by a runner: every runner stops
    # dispatching within one claim renewal (engine/send/claims.py) and claims nothing more.
    PAUSED = "paused"
    CANCELLED = "cancelled"  # final: the rows left open are suppressed `campaign_cancelled`


# Statuses under which no runner claims or dispatches anything.
HALTED_STATUSES = (CampaignStatus.PAUSED, CampaignStatus.CANCELLED)


class SendReason(StrEnum):
    """Reasons a row is suppressed that are the sender's, not gating's (gating.Reason)."""

    CAMPAIGN_CANCELLED = "campaign_cancelled"


class Outcome(StrEnum):
    """What happened to a recipient, as status, export and metrics report it.

    Every row has exactly one outcome, so every report's parts add up to its total. The
    opt-in request is an outcome of its own: the campaign's message was suppressed
    (awaiting_sms_opt_in) and the request went in its place.
    """

    SENT = "sent"
    OPT_IN_REQUEST = "opt_in_request"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    FAILED = "failed"
    PENDING = "pending"
    SENDING = "sending"


def outcome_of(state: str, purpose: str) -> Outcome:
    """The outcome of a row in `state` carrying `purpose`."""
    if purpose == Purpose.OPT_IN_REQUEST and state == DeliveryState.SENT:
        return Outcome.OPT_IN_REQUEST
    return Outcome(state)
