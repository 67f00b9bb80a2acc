"""JSON bodies of the contacts and consent-events API, checked by the CSV imports' own rows.

A contact object is a row of a contacts file (FORMATS.md, "Contacts") and a consent event a
row of a consent file ("Consent events"): each JSON value is handed to
engine/imports/contact_rows.py or consent_rows.py as the cell of its column, so the API and
the imports accept the same values with the same messages. Only the located field differs:
`contacts[3].email` instead of "line 5, column email".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InputError
from engine.imports.consent_rows import COLUMNS as EVENT_COLUMNS
from engine.imports.consent_rows import EventRow, EventRules, check_event_rows
from engine.imports.contact_rows import COLUMNS as CONTACT_COLUMNS
from engine.imports.contact_rows import ContactRow, ContactRules, check_contact_rows
from gating import TenantPolicy

__all__ = ["CONTACT_FIELDS", "EVENT_FIELDS", "MAX_BATCH", "contact_rows", "event_rows"]

# Upserts and appends per request: a DMS sync sends pages of this size.
MAX_BATCH = 1000
# `opted_out` of the file is not a field here: `marketing_opt_in` is its API spelling,
# and unlike the file's flag it can also opt a contact back in (an audited opt_in).
CONTACT_FIELDS = tuple(column for column in CONTACT_COLUMNS if column != "opted_out") + ("marketing_opt_in",)
# `external_id` comes from the URL and `actor` from the API key.
EVENT_FIELDS = tuple(column for column in EVENT_COLUMNS if column not in ("external_id", "actor"))


def _cell(value: Any, field: str, errors: list[InputError]) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    errors.append(InputError("must be a string or null", field=field))
    return ""


def _unknown(item: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, errors: list[InputError]) -> None:
    for name in sorted(set(item) - set(allowed)):
        hint = " (the actor is the API key's name)" if name == "actor" else ""
        errors.append(InputError(f"unknown field{hint} (expected {', '.join(allowed)})", field=prefix + name))


def contact_rows(
    items: list[Any], policy: TenantPolicy, prefix: str, errors: list[InputError]
) -> list[tuple[ContactRow, bool | None]]:
    """Each contact object as a checked row with its `marketing_opt_in` (None: not given).
    Problems go to `errors`, located as `{prefix}{i}].field` or `{prefix}field`."""
    rules = ContactRules(tuple(range(len(CONTACT_COLUMNS))), policy.country, policy.timezone)
    checked: list[tuple[ContactRow, bool | None]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        at = f"{prefix}{index}]." if prefix.endswith("[") else prefix
        if not isinstance(item, dict):
            errors.append(InputError("must be a JSON object", field=at.rstrip(".") or None))
            continue
        before = len(errors)
        _unknown(item, CONTACT_FIELDS, at, errors)
        cells = [_cell(item.get(column), at + column, errors) if column != "opted_out" else "" for column in CONTACT_COLUMNS]
        opt_in = item.get("marketing_opt_in")
        if opt_in is not None and not isinstance(opt_in, bool):
            errors.append(InputError("must be true or false", field=at + "marketing_opt_in"))
        result = check_contact_rows(rules, [(index, cells)])
        errors.extend(InputError(message, field=at + field) for _line, field, message in result.errors)
        external_id = cells[0].strip()
        if external_id in seen:
            errors.append(InputError(
                f"{external_id!r} repeats {prefix}{seen[external_id]}] (external_id must be unique in a batch)",
                field=at + "external_id",
            ))
        elif external_id:
            seen[external_id] = index
        if len(errors) == before and result.rows:
            checked.append((result.rows[0], opt_in))
    return checked


def event_rows(
    items: list[Any], policy: TenantPolicy, external_id: str, contact: tuple[int, str | None], errors: list[InputError]
) -> list[EventRow]:
    """Each consent-event object as a checked ledger row of the contact; problems located
    as `events[i].field`."""
    rules = EventRules(tuple(range(len(EVENT_COLUMNS))), frozenset(policy.classes), policy.country)
    checked: list[EventRow] = []
    for index, item in enumerate(items):
        at = f"events[{index}]."
        if not isinstance(item, dict):
            errors.append(InputError("must be a JSON object", field=f"events[{index}]"))
            continue
        before = len(errors)
        _unknown(item, EVENT_FIELDS, at, errors)
        cells = [
            external_id if column == "external_id" else "" if column == "actor" else _cell(item.get(column), at + column, errors)
            for column in EVENT_COLUMNS
        ]
        result = check_event_rows(rules, [(index, cells)], {external_id: contact})
        errors.extend(InputError(message, field=at + field) for _line, field, message in result.errors)
        if len(errors) == before and result.rows:
            checked.append(result.rows[0])
    return checked
