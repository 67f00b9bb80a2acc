"""The states of an outbox row (`webhook_messages.state`)."""

from __future__ import annotations

from enum import StrEnum


class MessageState(StrEnum):
    """pending (due at `next_attempt_at_us`, or being POSTed by the dispatcher holding its
    claim) → delivered (the receiver answered 2xx) | failed (every attempt failed: given
    up, visible in the endpoint's deliveries) | cancelled (the endpoint was deleted)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """What one POST attempt came to (the `outcome` label of the metric)."""

    DELIVERED = "delivered"
    RETRY = "retry"  # failed, another attempt is scheduled
    FAILED = "failed"  # failed, and it was the last attempt
