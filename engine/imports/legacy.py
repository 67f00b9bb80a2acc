"""`consentry consent migrate-legacy`: DPA-era flags turned into ledger events (seed 003).

A dealer system upgraded for GDPR carried its old "No Marketing" / "No Follow-Up" flags
forward: "any that haven't opted out of communication are opted in under GDPR (Legitimate
Interest) ... can be reversed on request (ie assume no customers have permission)". The
file is `external_id,no_marketing,no_follow_up` (docs/imports.md, "Legacy flags"); each
flag maps to classes of the tenant's policy:

- `no_follow_up` ("they will remain set for no Service Marketing"): `service`;
- `no_marketing` ("not ... communicated via Service or General Marketing"): `marketing`
  and `service`.

For each contact and class (`channel *`, method `legacy_migration`, the clock's instant):

- a flag set: a `revoke` (party `*`), whatever `--assume` says;
- no flag, `--assume legitimate_interest`: a `grant` (party `first`, basis
  `legitimate_interest`: the assumption covers us, never third parties);
- no flag, `--assume no_permission`: nothing, except that a grant an earlier migration
  recorded is revoked: the reversal the seed promises.

What the migration already recorded decides what is left to do (its own events, method
`legacy_migration`, not copies onto linked contacts), so the same file run twice records
nothing the second time. A class on which the contact's ledger holds any other grant or
revoke (a choice made since, through a form, a link, a text or the API) is left alone:
an assumption never overrides a recorded choice.

Contacts whose preferences the run changed are marked as needing a review by clearing
`contacts.reviewed_at_us`: a review date carried over from the old system reviewed the
old flags, not the assumption (the seed's "never reviewed ... boxes ticked carried
forward"). No `review` event is recorded, and review events in the ledger (real
conversations) are kept; with `review.enforce` gating then holds bulk marketing until
someone reviews the preferences with the customer (rule 10).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaigns.errors import InputError, InputErrors
from engine.clock import Clock
from engine.db.models import ConsentEvent, Contact
from engine.db.tenants import load_tenant
from engine.imports.cells import CellError, parse_flag
from engine.imports.csv_source import CsvSource
from engine.imports.ledger import record_events
from engine.imports.statements import contacts_by_external_id

__all__ = ["COLUMNS", "METHOD", "Assumption", "LegacySummary", "migrate_legacy_flags"]

COLUMNS = ("external_id", "no_marketing", "no_follow_up")
REQUIRED = ("external_id",)
METHOD = "legacy_migration"
# Which classes each flag withholds (seed 003's two examples).
FLAG_CLASSES = {"no_marketing": ("marketing", "service"), "no_follow_up": ("service",)}
CLASSES = ("marketing", "service")

_events = ConsentEvent.__table__
_contacts = Contact.__table__


class Assumption(StrEnum):
    """What a contact without a "no" flag is taken to have agreed to."""

    LEGITIMATE_INTEREST = "legitimate_interest"
    NO_PERMISSION = "no_permission"


@dataclass(slots=True)
class LegacySummary:
    path: str
    rows_read: int = 0
    grants: int = 0
    revokes: int = 0
    kept: int = 0  # (contact, class) pairs left to a choice recorded otherwise
    needing_review: int = 0

    def __str__(self) -> str:
        return (f"{self.path}: {self.rows_read} rows read, {self.grants} grants and {self.revokes} revokes recorded, "
                f"{self.kept} classes left to choices already recorded, {self.needing_review} contacts need a review")


async def migrate_legacy_flags(
    engine: AsyncEngine, path: str, tenant: str, assume: Assumption, *, actor: str | None, clock: Clock
) -> LegacySummary:
    """Map a legacy flags file onto a tenant's ledger, atomically: InputErrors (nothing
    written) when a row is bad."""
    summary = LegacySummary(path)
    now_us = clock()
    errors: list[InputError] = []
    seen: dict[str, int] = {}
    with CsvSource(path, COLUMNS, REQUIRED) as source:
        positions = [source.header.index(column) for column in COLUMNS]
        async with engine.begin() as conn:
            record = await load_tenant(conn, tenant)
            missing = [code for code in CLASSES if code not in record.policy.classes]
            if missing:
                raise InputErrors([InputError(
                    f"tenant {tenant} has no class {', '.join(missing)}: the legacy flags map to {', '.join(CLASSES)}",
                    path, 1, None)])
            changed: set[int] = set()
            for chunk in source.chunks():
                summary.rows_read += len(chunk)
                errors.extend(InputError(message, path, line, field) for line, _, field, message in chunk.broken)
                rows = [(line, [cells[i].strip() if i >= 0 else "" for i in positions]) for line, cells in chunk.rows]
                known = await contacts_by_external_id(conn, record.id, sorted({values[0] for _, values in rows} - {""}))
                flagged: dict[int, frozenset[str]] = {}
                for line, (external_id, no_marketing, no_follow_up) in rows:
                    classes = _check(path, line, external_id, {"no_marketing": no_marketing, "no_follow_up": no_follow_up},
                                     known, seen, errors)
                    if classes is not None:
                        flagged[known[external_id][0]] = classes
                if errors or not flagged:
                    continue
                history = await _history(conn, record.id, flagged)
                events: list[dict[str, object]] = []
                for contact_id, withheld in flagged.items():
                    for class_code in CLASSES:
                        last, other = history.get((contact_id, class_code), (None, False))
                        if other:
                            summary.kept += 1
                            continue
                        event = _decide(contact_id, class_code, class_code in withheld, assume, last, now_us, actor)
                        if event is not None:
                            events.append(event)
                            changed.add(contact_id)
                await record_events(conn, record.id, events, recorded_at_us=now_us)
                summary.grants += sum(1 for event in events if event["action"] == "grant")
                summary.revokes += sum(1 for event in events if event["action"] == "revoke")
            errors.sort(key=lambda error: error.line or 0)
            if errors:
                raise InputErrors(errors)
            summary.needing_review = len(changed)
            if changed:
                await conn.execute(
                    update(_contacts)
                    .where(_contacts.c.tenant_id == record.id, _contacts.c.id.in_(sorted(changed)))
                    .values(reviewed_at_us=None, updated_at_us=now_us)
                )
    return summary


def _check(path: str, line: int, external_id: str, flags: dict[str, str], known: dict, seen: dict[str, int],
           errors: list[InputError]) -> frozenset[str] | None:
    before = len(errors)
    if not external_id:
        errors.append(InputError("is required", path, line, "external_id"))
    elif external_id not in known:
        errors.append(InputError(f"no contact {external_id!r} in this tenant (import the contact first)",
                                 path, line, "external_id"))
    elif external_id in seen:
        errors.append(InputError(f"{external_id!r} is already on line {seen[external_id]}", path, line, "external_id"))
    else:
        seen[external_id] = line
    withheld: set[str] = set()
    for field, text in flags.items():
        try:
            if parse_flag(text):
                withheld.update(FLAG_CLASSES[field])
        except CellError as exc:
            errors.append(InputError(str(exc), path, line, field))
    return None if len(errors) > before else frozenset(withheld)


# (contact_id, class) -> (latest action the migration recorded or None, any other choice?)
_History = dict[tuple[int, str], tuple[str | None, bool]]


async def _history(conn: AsyncConnection, tenant_id: int, contact_ids: Iterable[int]) -> _History:
    """What the ledger already says about the legacy classes of these contacts, in one query."""
    query = (
        select(_events.c.contact_id, _events.c.action, _events.c.class_code, _events.c.method, _events.c.linked_from)
        .where(
            _events.c.tenant_id == tenant_id,
            _events.c.contact_id.in_(sorted(contact_ids)),
            _events.c.action.in_(("grant", "revoke")),
            _events.c.class_code.in_((*CLASSES, "*")),
        )
        .order_by(_events.c.contact_id, _events.c.occurred_at_us, _events.c.id)
    )
    history: _History = {}
    for contact_id, action, class_code, method, linked_from in await conn.execute(query):
        for code in CLASSES if class_code == "*" else (class_code,):
            last, other = history.get((contact_id, code), (None, False))
            if method != METHOD:
                other = True
            elif linked_from is None:
                last = action
            history[(contact_id, code)] = (last, other)
    return history


def _decide(contact_id: int, class_code: str, withheld: bool, assume: Assumption, last: str | None,
            now_us: int, actor: str | None) -> dict[str, object] | None:
    """The event that brings a class to what the flags and the assumption say, given the
    last action the migration recorded on it; None when it is there already."""
    if withheld:
        wanted: str | None = "revoke"
    elif assume is Assumption.LEGITIMATE_INTEREST:
        wanted = "grant"
    else:
        wanted = "revoke" if last == "grant" else None
    if wanted is None or wanted == last:
        return None
    event: dict[str, object] = {
        "contact_id": contact_id, "action": wanted, "channel": "*", "class_code": class_code,
        "method": METHOD, "occurred_at_us": now_us, "actor": actor,
    }
    if wanted == "grant":
        event.update(party="first", basis=Assumption.LEGITIMATE_INTEREST.value, note="legacy flags: no 'no' flag")
    elif withheld:
        event.update(party="*", note="legacy flags: " + ("no_marketing" if class_code == "marketing" else "no_marketing or no_follow_up"))
    else:
        event.update(party="first", note="legacy migration reversed: --assume no_permission")
    return event
