"""`consentry contacts link`: a links CSV (`external_id,linked_external_id,kind`) recorded
as contact links (docs/imports.md, "Linked contacts").

One transaction: every bad row is reported (file, line, field) and nothing is written.
Idempotent: a pair already linked is left alone, or gets the file's kind when it differs;
a pair is the same whichever side is named first. What a link does to consent is
engine/imports/carbon_copy.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from campaigns.errors import InputError, InputErrors
from engine.clock import Clock
from engine.db.models import ContactLink
from engine.db.tenants import load_tenant
from engine.imports.csv_source import CsvSource
from engine.imports.statements import contacts_by_external_id

__all__ = ["COLUMNS", "LinkKind", "LinkSummary", "import_links"]

COLUMNS = ("external_id", "linked_external_id", "kind")

_links = ContactLink.__table__


class LinkKind(StrEnum):
    """What the second contact is to the first."""

    HOUSEHOLD = "household"
    BILLING = "billing"
    SERVICE_LOCATION = "service_location"
    OTHER = "other"


@dataclass(slots=True)
class LinkSummary:
    path: str
    rows_read: int = 0
    links_created: int = 0
    links_changed: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return (f"{self.path}: {self.rows_read} rows read, {self.links_created} links created, "
                f"{self.links_changed} changed, {self.unchanged} unchanged")


async def import_links(engine: AsyncEngine, path: str, tenant: str, *, actor: str | None, clock: Clock) -> LinkSummary:
    """Record a links file for a tenant; InputErrors (nothing written) when a row is bad."""
    summary = LinkSummary(path)
    errors: list[InputError] = []
    wanted: dict[tuple[int, int], tuple[int, str]] = {}  # (a, b) -> (line, kind); a < b
    with CsvSource(path, COLUMNS, COLUMNS) as source:
        async with engine.begin() as conn:
            record = await load_tenant(conn, tenant)
            positions = [source.header.index(column) for column in COLUMNS]
            for chunk in source.chunks():
                for line, _cells, field, message in chunk.broken:
                    errors.append(InputError(message, path, line, field))
                summary.rows_read += len(chunk)
                named = {cells[positions[i]].strip() for _, cells in chunk.rows for i in (0, 1)}
                named.discard("")
                known = await contacts_by_external_id(conn, record.id, sorted(named))
                for line, cells in chunk.rows:
                    external_id, linked, kind = (cells[i].strip() for i in positions)
                    located = _check(path, line, external_id, linked, kind.lower(), known, errors)
                    if located is None:
                        continue
                    pair, kind = located
                    earlier = wanted.get(pair)
                    if earlier is not None and earlier[1] != kind:
                        errors.append(InputError(
                            f"{external_id!r} and {linked!r} are linked as {earlier[1]} on line {earlier[0]}",
                            path, line, "kind"))
                    wanted.setdefault(pair, (line, kind))
            errors.sort(key=lambda error: error.line or 0)
            if errors:
                raise InputErrors(errors)
            await _write(conn, record.id, wanted, actor, clock(), summary)
    return summary


def _check(path: str, line: int, external_id: str, linked: str, kind: str, known: dict, errors: list) \
        -> tuple[tuple[int, int], str] | None:
    before = len(errors)

    def bad(field: str, message: str) -> None:
        errors.append(InputError(message, path, line, field))

    for field, value in (("external_id", external_id), ("linked_external_id", linked)):
        if not value:
            bad(field, "is required")
        elif value not in known:
            bad(field, f"no contact {value!r} in this tenant (import the contact first)")
    if external_id and external_id == linked:
        bad("linked_external_id", "a contact cannot be linked to itself")
    kinds = ", ".join(LinkKind)
    if not kind:
        bad("kind", f"is required (one of {kinds})")
    elif kind not in LinkKind.__members__.values():
        bad("kind", f"{kind!r} is not one of {kinds}")
    if len(errors) > before:
        return None
    a, b = sorted((known[external_id][0], known[linked][0]))
    return (a, b), kind


async def _write(conn, tenant_id: int, wanted: dict, actor: str | None, now_us: int, summary: LinkSummary) -> None:
    existing = {
        (a, b): (link_id, kind)
        for link_id, a, b, kind in await conn.execute(
            select(_links.c.id, _links.c.contact_a, _links.c.contact_b, _links.c.kind).where(_links.c.tenant_id == tenant_id)
        )
    }
    new = []
    for (a, b), (_line, kind) in wanted.items():
        found = existing.get((a, b))
        if found is None:
            new.append({"tenant_id": tenant_id, "contact_a": a, "contact_b": b, "kind": kind,
                        "created_at_us": now_us, "actor": actor})
        elif found[1] != kind:
            await conn.execute(_links.update().where(_links.c.id == found[0]).values(kind=kind))
            summary.links_changed += 1
        else:
            summary.unchanged += 1
    if new:
        await conn.execute(_links.insert(), new)
    summary.links_created += len(new)
