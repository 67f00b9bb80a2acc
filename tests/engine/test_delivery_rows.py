"""A batch's delivery rows (engine/db/deliveries.py `insert_new`): the rows this runner
inserted come back keyed by contact, a row another runner inserted first does not, and the
batch is written in one statement, not one per row (which cost four times the CPU a
message: bench/bench_send.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, insert, select

from engine.db import deliveries as ledger
from engine.db.models import Campaign, Contact, Delivery, Tenant
from engine.db.session import make_engine
from tests.cli import ok

STAMP = 1_800_000_000_000_000  # every row of this test is stamped at this instant


def _row(tenant_id: int, campaign_id: int, contact_id: int) -> dict:
    return {
        "tenant_id": tenant_id, "campaign_id": campaign_id, "contact_id": contact_id, "channel": "sms",
        "kind": "bulk", "purpose": "campaign", "address": f"+1555{contact_id:07d}", "decision": "send",
        "reason": None, "defer_until_us": None, "state": "pending", "attempts": 0,
        "created_at_us": STAMP, "updated_at_us": STAMP,
    }


def test_a_batch_is_inserted_in_one_statement_and_only_its_own_rows_come_back(db_url: str) -> None:
    ok("db", "init", "--db", db_url)

    async def scenario() -> tuple[dict[int, int], list[tuple[int, int]], int, list[int]]:
        engine = make_engine(db_url)
        try:
            async with engine.begin() as conn:
                tenant = (await conn.execute(insert(Tenant).values(code="acme", name="Acme", created_at_us=STAMP)
                                             .returning(Tenant.id))).scalar_one()
                campaign = (await conn.execute(insert(Campaign).values(
                    tenant_id=tenant, code="spring", kind="bulk", channel="sms", class_code="marketing", party="first",
                    definition_json="{}", templates_json="{}", policy_version=1, status="running",
                    created_at_us=STAMP, updated_at_us=STAMP,
                ).returning(Campaign.id))).scalar_one()
                await conn.execute(insert(Contact), [
                    {"tenant_id": tenant, "external_id": f"C{n}", "created_at_us": STAMP, "updated_at_us": STAMP}
                    for n in range(600)
                ])
                contacts = list((await conn.execute(select(Contact.id).order_by(Contact.id))).scalars())
                # Another runner got to the first 20 contacts first.
                theirs = await ledger.insert_new(conn, [_row(tenant, campaign, c) for c in contacts[:20]])
            inserts: list[str] = []

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def count(_conn, _cursor, statement: str, *_args) -> None:  # noqa: ANN001, ANN002
                if statement.lstrip().upper().startswith("INSERT"):
                    inserts.append(statement)

            async with engine.begin() as conn:
                ours = await ledger.insert_new(conn, [_row(tenant, campaign, c) for c in contacts])
                table = [tuple(row) for row in await conn.execute(
                    select(Delivery.contact_id, Delivery.id).order_by(Delivery.contact_id))]
            return ours, table, len(inserts), [theirs[c] for c in contacts[:20]]
        finally:
            await engine.dispose()

    ours, table, statements, theirs = asyncio.run(scenario())
    assert len(table) == 600
    by_contact = dict(table)
    # Ours: the 580 rows this call inserted, each with its own id; none of the other runner's.
    assert len(ours) == 580
    assert all(by_contact[contact] == delivery for contact, delivery in ours.items())
    assert not set(ours.values()) & set(theirs)
    assert statements == 1
