"""Writing checked contact rows: the one place contacts and their addresses are upserted.

The contacts CSV import (engine/imports/contacts.py) and the contacts API
(engine/api/contacts_api.py) both check rows with contact_rows and write them here, so a
contact written over HTTP is stored exactly as the same row of a file would be: empty
values keep stored ones, a changed address replaces the old point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from engine.imports.contact_rows import ContactRow
from engine.imports.staging import is_staged, merge_contact_rows
from engine.imports.statements import executemany, highest_contact_id, new_contact_ids, prepared

__all__ = ["write_contact_rows"]


async def write_contact_rows(
    conn: AsyncConnection,
    tenant_id: int,
    stamp: int,
    rows: Sequence[ContactRow],
    existing: Mapping[str, tuple],
) -> tuple[dict[str, int], list[str]]:
    """Upsert `rows` (distinct external_ids) and their email/phone points, stamped `stamp`.

    `existing`: `external_id -> (id, ...)` of those already stored. Returns every row's
    contact id by external_id and the external_ids created. Records no ledger event: the
    caller decides what a row's flags mean (an import's `opted_out`, the API's
    `marketing_opt_in`).
    """
    if not rows:
        return {}, []
    if is_staged(conn, rows):
        contact_id = await merge_contact_rows(conn, tenant_id, stamp, rows)
        return contact_id, [row.external_id for row in rows if row.external_id not in existing]
    highest_before = await highest_contact_id(conn)
    await executemany(
        conn,
        prepared(conn, "upsert_contacts"),
        [
            (tenant_id, row.external_id, row.first_name, row.last_name, row.timezone, row.country,
             row.region, row.lead_source, False, None, row.reviewed_at_us, stamp, stamp)
            for row in rows
        ],
    )
    created = [row.external_id for row in rows if row.external_id not in existing]
    contact_id = {external_id: found[0] for external_id, found in existing.items()}
    if created:
        contact_id.update(await new_contact_ids(conn, tenant_id, created, highest_before))
    points: list[tuple] = []
    for row in rows:
        cid = contact_id[row.external_id]
        if row.email is not None:
            points.append((tenant_id, cid, "email", row.email, row.email_valid, None, stamp))
        if row.phone is not None:
            points.append((tenant_id, cid, "phone", row.phone, row.phone_valid, row.phone_zones, stamp))
    await executemany(conn, prepared(conn, "upsert_points"), points)
    return contact_id, created
