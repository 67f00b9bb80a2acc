"""The events Consentry pushes to webhook endpoints, and their JSON bodies.

Every body has the same envelope (docs/api.md, "Webhooks out"):

    {"type": "consent.revoke", "id": "evt_...", "timestamp": "2025-03-01T10:00:00.123456Z",
     "tenant": "acme-motors", "data": {...}}

`id` is derived from what the event is about (the ledger row, the campaign, the delivery),
not drawn at random: whoever enqueues the same event twice (two runners settling one
campaign, a concurrent writer's ledger rows) gets the same id, and the outbox's unique key
keeps one row. Receivers de-duplicate on it too: delivery is at least once, and a retry
carries the same id (it is also the `webhook-id` header, Standard Webhooks).

Nothing here does IO: the outbox (engine/webhooks/outbox.py) loads rows and writes bodies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from engine.timeutil import iso_micro_z

__all__ = [
    "CONSENT_ACTIONS",
    "EventType",
    "body",
    "event_id",
    "instant",
    "parse_event_types",
    "source_of",
]


class EventType(StrEnum):
    CONSENT_OPT_OUT = "consent.opt_out"
    CONSENT_OPT_IN = "consent.opt_in"
    CONSENT_REVOKE = "consent.revoke"
    CONSENT_GRANT = "consent.grant"
    CONSENT_BLOCK = "consent.block"
    CONSENT_UNBLOCK = "consent.unblock"
    CAMPAIGN_FINISHED = "campaign.finished"
    DELIVERY_FAILED = "delivery.failed"


# Ledger actions that are consent changes. `review` (preferences looked at with the
# customer) changes nothing a receiver must act on, so it is not an event.
CONSENT_ACTIONS = frozenset({"opt_out", "opt_in", "revoke", "grant", "block", "unblock"})

_SOURCES_BY_CAUSE = {
    "hard_bounce": "bounce",
    "spam_complaint": "complaint",
    "complaint": "complaint",
    "carrier_unsubscribed": "carrier",
    "invalid_number": "carrier",
    "not_mobile": "carrier",
    "sms_stop": "sms_keyword",
}
_SOURCES_BY_METHOD = {
    "sms_keyword": "sms_keyword",
    "email_link": "unsubscribe_link",
    "unsubscribe_link": "unsubscribe_link",
    "preference_centre": "preference_centre",
    "import": "import",
    "api": "api",
    "delivery_failure": "delivery_failure",
    "status_callback": "carrier",
}


def source_of(method: str | None, cause: str | None) -> str:
    """Where a consent change came from, in one word a receiver can switch on.

    The system's own cause wins (a bounce recorded during a send says `bounce`), then the
    method; a method Consentry does not know (an imported `verbal`, `web_form`) is given
    as it was recorded.
    """
    if cause and cause in _SOURCES_BY_CAUSE:
        return _SOURCES_BY_CAUSE[cause]
    if method and method in _SOURCES_BY_METHOD:
        return _SOURCES_BY_METHOD[method]
    return method or "unknown"


def parse_event_types(values: Iterable[Any]) -> tuple[list[EventType], list[tuple[int, str]]]:
    """Event types from a request, and the (index, message) of each one that is not."""
    known = {member.value: member for member in EventType}
    types: list[EventType] = []
    problems: list[tuple[int, str]] = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or value not in known:
            problems.append((index, f"{value!r} is not an event type ({', '.join(known)})"))
        elif known[value] not in types:
            types.append(known[value])
    return sorted(types), problems


def event_id(kind: str, source_id: int) -> str:
    """`evt_` and 26 hex digits of a digest of what the event is about."""
    return "evt_" + hashlib.blake2b(f"consentry:{kind}:{source_id}".encode(), digest_size=13).hexdigest()


def instant(value_us: int | None) -> str | None:
    """ISO 8601 UTC with microseconds and `Z`, as every instant of a body is written."""
    return iso_micro_z(value_us)


# One encoder: json.dumps with any option builds a new one per call, a third of the cost.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def body(event_type: EventType, identifier: str, timestamp_us: int, tenant: str, data: Mapping[str, Any]) -> str:
    """The JSON body, compact and with sorted keys: the bytes that are signed and stored."""
    envelope = {"type": event_type.value, "id": identifier, "timestamp": instant(timestamp_us), "tenant": tenant,
                "data": data}
    return _ENCODER.encode(envelope)
