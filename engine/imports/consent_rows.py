"""Checking the rows of a consent events file (FORMATS.md, "Consent events").

Like contact_rows, pure and run in worker processes. The writer looks the chunk's
external_ids up first and hands over `contacts` (`external_id -> (contact_id, country)`),
because an address on `sms`/`voice` is read with the contact's own country.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from engine.imports.addresses import AddressError, normalize_address
from engine.imports.cells import CellError, check_length, parse_instant_with_offset
from engine.imports.csv_source import Header
from engine.imports.vocabulary import (
    ACTIONS,
    CHANNELS,
    PARTIES,
)
from engine.imports.vocabulary import (
    CONTACT_LEVEL_ACTIONS as _CONTACT_LEVEL,
)
from engine.imports.vocabulary import (
    SCOPED_ACTIONS as _SCOPED,
)
from gating import TenantPolicy

__all__ = ["COLUMNS", "REQUIRED", "CheckedEvents", "EventRow", "EventRules", "check_event_rows"]

COLUMNS = (
    "external_id",
    "action",
    "channel",
    "class",
    "party",
    "address",
    "method",
    "occurred_at",
    "actor",
    "basis",
    "note",
)
# Without these columns no row could be valid: a bad file, reported once on line 1.
REQUIRED = ("external_id", "action", "method", "occurred_at")

_LIMITS = {"method": 64, "actor": 200, "basis": 200}
_ADDRESS_LIMIT = 320


@dataclass(frozen=True, slots=True)
class EventRules:
    positions: tuple[int, ...]  # for each of COLUMNS, its index in the file's rows, or -1
    classes: frozenset[str]  # the class codes of the tenant's policy
    country: str  # reads phone numbers of contacts without a country

    @classmethod
    def for_file(cls, header: Header, policy: TenantPolicy) -> EventRules:
        return cls(
            positions=tuple(header.index(column) for column in COLUMNS),
            classes=frozenset(policy.classes),
            country=policy.country,
        )


class EventRow(NamedTuple):
    """A valid event, ready for the ledger (the writer adds tenant and recorded_at)."""

    line: int
    contact_id: int
    action: str
    channel: str | None
    class_code: str | None
    party: str | None
    address: str | None
    method: str
    occurred_at_us: int
    actor: str | None
    basis: str | None
    note: str | None


class CheckedEvents(NamedTuple):
    rows: list[EventRow]
    errors: list[tuple[int, str, str]]  # (line, field, message), in line then column order


def check_event_rows(
    rules: EventRules,
    rows: list[tuple[int, list[str]]],
    contacts: dict[str, tuple[int, str | None]] | None,
) -> CheckedEvents:
    """Check a chunk of `(line, cells)`. `contacts` None means every external_id is known
    (a check without a database: the benchmark's validation-only pass)."""
    valid: list[EventRow] = []
    errors: list[tuple[int, str, str]] = []
    positions = rules.positions
    for line, cells in rows:
        values = [cells[i].strip() if i >= 0 else "" for i in positions]
        problems: list[tuple[int, str, str]] = []
        row = _check(rules, contacts, line, values, problems)
        if problems:
            errors.extend(problems)
        else:
            assert row is not None  # _check returns None exactly when it reported problems
            valid.append(row)
    return CheckedEvents(valid, errors)


def _check(rules: EventRules, contacts, line: int, values: list[str], problems: list) -> EventRow | None:
    external_id, action, channel, class_code, party, address, method, occurred_at, actor, basis, note = values

    def bad(field: str, message: str) -> None:
        problems.append((line, field, message))

    contact_id, country = 0, None
    if not external_id:
        bad("external_id", "is required")
    elif contacts is not None:
        found = contacts.get(external_id)
        if found is None:
            bad("external_id", f"no contact {external_id!r} in this tenant (import the contact first)")
        else:
            contact_id, country = found

    action = action.lower()
    if not action:
        bad("action", f"is required (one of {', '.join(ACTIONS)})")
    elif action not in ACTIONS:
        bad("action", f"{action!r} is not one of {', '.join(ACTIONS)}")
        action = ""  # the rules below depend on a known action

    channel = channel.lower()
    if action in _CONTACT_LEVEL:
        if channel:
            bad("channel", f"must be empty for {action} (it applies to the contact on every channel)")
    elif action:
        if not channel:
            bad("channel", f"is required for {action} (one of {', '.join(CHANNELS)})")
        elif channel not in CHANNELS:
            bad("channel", f"{channel!r} is not one of {', '.join(CHANNELS)}")

    if action in _SCOPED:
        if not class_code:
            bad("class", f"is required for {action} (a class of the tenant's policy, or *)")
        elif class_code != "*" and class_code not in rules.classes:
            known = ", ".join(sorted(rules.classes))
            bad("class", f"{class_code!r} is not a class of the tenant's policy ({known}, or *)")
        party = party.lower() or "first"
        if party not in PARTIES:
            bad("party", f"{party!r} is not one of {', '.join(PARTIES)}")
    elif action:
        if class_code:
            bad("class", f"must be empty for {action} (classes apply to grant and revoke)")
        if party:
            bad("party", f"must be empty for {action} (parties apply to grant and revoke)")

    stored_address = None
    if address:
        given_channel = channel if channel in CHANNELS else None
        try:
            stored_address = normalize_address(address, given_channel, country or rules.country).address
            check_length(stored_address, _ADDRESS_LIMIT)
        except AddressError as exc:
            bad("address", exc.message)
        except CellError as exc:
            bad("address", str(exc))

    if not method:
        bad("method", "is required (e.g. web_form, verbal, written, sms_keyword, email_link, import)")
    else:
        _limit(bad, "method", method)

    occurred_at_us = 0
    if not occurred_at:
        bad("occurred_at", "is required (ISO 8601 with an offset, e.g. 2025-03-01T10:00:00-05:00)")
    else:
        try:
            occurred_at_us = parse_instant_with_offset(occurred_at)
        except CellError as exc:
            bad("occurred_at", str(exc))

    _limit(bad, "actor", actor)
    _limit(bad, "basis", basis)

    if problems:
        return None
    return EventRow(
        line, contact_id, action, channel or None, class_code or None,
        party if action in _SCOPED else None, stored_address, method, occurred_at_us,
        actor or None, basis or None, note or None,
    )


def _limit(bad, field: str, text: str) -> None:
    try:
        check_length(text, _LIMITS[field])
    except CellError as exc:
        bad(field, str(exc))
