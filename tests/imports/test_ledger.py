"""engine.imports.ledger: the API the send pipeline records suppressions with."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event as sqlalchemy_event

from engine.db.session import make_engine
from engine.imports import contact_ids_for_address, normalize_email, normalize_phone, record_events


def run(url, work):
    async def go():
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_a_bounce_is_recorded_as_a_block_with_its_cause(workspace):
    workspace.import_contacts(workspace.contacts_file(
        "C1,,,ann@Example.com,(415) 555-0123,,,,,,", "C2,,,ann@EXAMPLE.com,,,,,,,", "C3,,,other@example.com,,,,,,,"
    ))
    ((tenant_id,),) = workspace.query("SELECT id FROM tenants WHERE code = 'acme'")
    address, _ = normalize_email("ann@example.COM")
    phone, _, _ = normalize_phone("+1 415 555 0123", "US")

    async def bounce(conn):
        bounced = await contact_ids_for_address(conn, tenant_id, "email", address)
        stopped = await contact_ids_for_address(conn, tenant_id, "phone", phone)
        events = [
            {"contact_id": cid, "action": "block", "channel": "email", "address": address,
             "method": "bounce", "occurred_at_us": 1_000, "cause": "hard_bounce"}
            for cid in bounced
        ]
        events.append({"contact_id": stopped[0], "action": "opt_out", "method": "sms_keyword",
                       "occurred_at_us": 2_000, "actor": "carrier"})
        return bounced, await record_events(conn, tenant_id, events, recorded_at_us=5_000)

    bounced, count = run(workspace.url, bounce)
    c1, c2 = workspace.contact("C1")["id"], workspace.contact("C2")["id"]
    assert bounced == [c1, c2] and count == 3
    assert workspace.query(
        "SELECT contact_id, action, channel, address, method, occurred_at_us, recorded_at_us, cause, actor"
        " FROM consent_events ORDER BY id"
    ) == [
        (c1, "block", "email", "ann@example.com", "bounce", 1_000, 5_000, "hard_bounce", None),
        (c2, "block", "email", "ann@example.com", "bounce", 1_000, 5_000, "hard_bounce", None),
        (c1, "opt_out", None, None, "sms_keyword", 2_000, 5_000, None, "carrier"),
    ]
    assert workspace.contact("C1")["opted_out"] and workspace.contact("C1")["opted_out_changed_at_us"] == 2_000


def test_events_are_checked_before_anything_is_written(workspace):
    workspace.import_contacts(workspace.contacts_file("C1,,,,,,,,,,"))
    ((tenant_id,),) = workspace.query("SELECT id FROM tenants WHERE code = 'acme'")
    cid = workspace.contact("C1")["id"]
    bad = [
        {"contact_id": cid, "action": "block", "method": "bounce"},  # no occurred_at_us
        {"contact_id": cid, "action": "delete", "method": "x", "occurred_at_us": 1},
        {"contact_id": cid, "action": "block", "method": "x", "occurred_at_us": 1, "reason": "?"},
    ]
    for event in bad:
        with pytest.raises(ValueError):
            run(workspace.url, lambda conn, event=event: record_events(conn, tenant_id, [event], recorded_at_us=1))
    assert workspace.query("SELECT count(*) FROM consent_events") == [(0,)]


def test_who_has_an_address_is_looked_up_by_the_address_not_by_reading_the_tenant(workspace):
    """A STOP webhook asks this once per text. With ORDER BY contact_id in the query SQLite
    walked the tenant's (tenant_id, contact_id, kind) index instead, reading every contact
    point of the tenant (2.3 ms at 2,000 contacts, and growing with the tenant)."""
    if not workspace.url.startswith("sqlite"):
        pytest.skip("the plan asserted is SQLite's; PostgreSQL plans by its statistics")
    rows = [f"C{n},,,c{n}@example.com,(415) 555-{n % 7:04d},,,,,," for n in range(1, 301)]
    workspace.import_contacts(workspace.contacts_file(*rows))
    ((tenant_id,),) = workspace.query("SELECT id FROM tenants WHERE code = 'acme'")
    phone, _, _ = normalize_phone("(415) 555-0003", "US")

    async def lookup() -> tuple[list[int], list[str]]:
        engine = make_engine(workspace.url)
        statements: list[tuple[str, object]] = []

        def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # noqa: ANN001
            statements.append((statement, parameters))

        sqlalchemy_event.listen(engine.sync_engine, "before_cursor_execute", capture)
        try:
            async with engine.connect() as conn:
                found = await contact_ids_for_address(conn, tenant_id, "phone", phone)
                [(statement, parameters)] = statements
                plan = [row[-1] for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            return found, plan
        finally:
            await engine.dispose()

    found, plan = asyncio.run(lookup())
    expected = [workspace.contact(f"C{n}")["id"] for n in range(1, 301) if n % 7 == 3]
    assert found == sorted(expected) and len(found) == 43
    assert plan == [
        "SEARCH contact_points USING INDEX ix_contact_points_tenant_id_kind_address (tenant_id=? AND kind=? AND address=?)"
    ]
