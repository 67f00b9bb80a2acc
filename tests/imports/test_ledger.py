"""engine.imports.ledger: the API the send pipeline records suppressions with."""

from __future__ import annotations

import asyncio

import pytest

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
