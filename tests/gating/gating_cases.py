"""Builders for the gating tests: tenant mappings, contact rows, ledgers, and `gate`.

`gate` runs one recipient through every entry point (build_states + decide, the batch
evaluator, explain) and checks they agree, so each example test also checks that.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gating import (
    BatchEvaluator,
    ContactRow,
    LedgerRow,
    Message,
    TenantPolicy,
    build_states,
    compile_policy,
    decide,
    explain,
)

DAY = 86_400_000_000
HOUR = 3_600_000_000
MINUTE = 60_000_000


def at(text: str) -> int:
    """Microseconds since the epoch of an ISO 8601 instant ("2024-06-15T12:00:00Z")."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution)


NOW = at("2024-06-15T16:00:00Z")  # noon in New York: never quiet

BASE_TENANT = {
    "tenant": "acme-motors",
    "name": "Acme Motors",
    "regime": "opt_out",
    "country": "US",
    "timezone": "America/New_York",
    "postal_address": "1 Main St, Springfield",
    "classes": {
        "marketing": {},
        "service": {"mode": "opt_out"},
        "survey": {"mode": "opt_out"},
        "transactional": {"mode": "exempt"},
        "newsletter": {"mode": "opt_in"},
    },
    "sms": {"opt_in_required": False, "opt_in_excluded_sources": []},
    "reauthorization_days": {},
    "review": {"period_days": 183, "enforce": False},
    "quiet_hours": None,
    "frequency_caps": [],
}


def tenant(**overrides) -> dict:
    """BASE_TENANT with top-level keys replaced and nested mappings (sms, review) merged."""
    data = copy.deepcopy(BASE_TENANT)
    for key, value in overrides.items():
        if key in ("sms", "review") and isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def bulk(channel: str = "email", class_code: str = "marketing", party: str = "first", **extra) -> Message:
    return Message("bulk", channel, class_code, party, **extra)


def individual(channel: str = "email", class_code: str = "marketing", party: str = "first", **extra) -> Message:
    return Message("individual", channel, class_code, party, **extra)


EMAIL = "pat@example.com"
PHONE = "+15550001111"


def contact(contact_id: int = 1, channel: str = "email", **fields) -> ContactRow:
    """A contact row with a valid address for `channel` unless told otherwise."""
    defaults = {"external_id": f"C{contact_id}", "address": EMAIL if channel == "email" else PHONE, "address_valid": True}
    defaults.update(fields)
    if defaults["address"] is None and "address_valid" not in fields:
        defaults["address_valid"] = None
    return ContactRow(contact_id, **defaults)


@dataclass
class Ledger:
    """Events for one contact with ascending ids; `add` returns the event id."""

    contact_id: int = 1
    rows: list[LedgerRow] = field(default_factory=list)
    next_id: int = 1

    def add(self, action: str, channel: str | None = None, class_code: str | None = None, party: str | None = None,
            *, address: str | None = None, when: int = NOW - 30 * DAY) -> int:
        event_id = self.next_id
        self.next_id += 1
        self.rows.append(LedgerRow(self.contact_id, event_id, action, channel, class_code, party, address, when))
        self.rows.sort(key=lambda row: (row.occurred_at_us, row.event_id))
        return event_id


def gate(message: Message, row: ContactRow, events=(), *, now: int = NOW, recent: int = 0, policy=None, **tenant_overrides):
    """The decision for one recipient; asserts decide, the batch evaluator and explain agree."""
    rows = list(events.rows if isinstance(events, Ledger) else events)
    compiled = policy if policy is not None else compile_policy(TenantPolicy.from_mapping(tenant(**tenant_overrides)), message)
    state = build_states([row], rows, compiled, {row.contact_id: recent}, now_us=now)[0]
    decided = decide(state, message, compiled, now)
    batch = BatchEvaluator(compiled, message).evaluate([row], rows, {row.contact_id: recent}, now)
    explained = explain(row, rows, message, compiled, now, recent)
    assert batch == [decided], (batch, decided)
    assert explained.decision == decided, (explained.decision, decided)
    first_fail = next((rule for rule in explained.rules if rule.verdict == "fail"), None)
    assert (first_fail is None) == (decided.reason is None)
    if first_fail is not None:
        assert first_fail.code == decided.reason
    return decided


def outcome(decision) -> tuple[str, str | None]:
    """("send", None), ("suppress", "opted_out"), ("defer", "quiet_hours")."""
    return (decision.decision, None if decision.reason is None else decision.reason.value)
