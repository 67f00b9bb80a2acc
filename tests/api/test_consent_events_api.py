"""Consent events over HTTP: append one or a list (the consent import's checks, actor from
the key), read the ledger page by page; each role, both tenants."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.errors import InputErrors
from engine.imports import import_consent_events
from tests.api.conftest import CLOCK, ROLES, Api

RECORDERS = ("admin", "manager", "sales")
PATH = "/api/v1/contacts/{}/consent-events"


async def post(api: Api, tenant: str, role: str, external_id: str, body: object, headers: dict | None = None):
    async with api.session.post(
        api.url(PATH.format(external_id)), json=body, headers={**api.auth(tenant, role), **(headers or {})}
    ) as r:
        return r.status, await r.json(), r.headers


async def ledger(api: Api, tenant: str, role: str, external_id: str, query: str = "") -> tuple[int, dict]:
    async with api.session.get(api.url(PATH.format(external_id) + query), headers=api.auth(tenant, role)) as r:
        return r.status, await r.json()


GRANT = {
    "action": "grant", "channel": "sms", "class": "survey", "address": "(213) 555-0101",
    "method": "web_form", "occurred_at": "2026-11-01T09:30:00-07:00", "basis": "consent", "note": "test drive form",
}


@pytest.mark.parametrize("role", ROLES)
async def test_append_one_for_recorders_only(api: Api, role: str) -> None:
    status, body, _h = await post(api, "acme-motors", role, "C1", GRANT)
    if role not in RECORDERS:
        assert status == 403 and "may not record consent" in body["error"]
        assert (await ledger(api, "acme-motors", "admin", "C1"))[1]["events"] == []
        return
    assert status == 201, body
    (event,) = body["events"]
    assert event["action"] == "grant" and event["class"] == "survey" and event["party"] == "first"
    # The address is stored as the contact point spells it; the actor is the key's name.
    assert event["address"] == "+12135550101"
    assert event["actor"] == f"{role} key"
    assert event["occurred_at"] == "2026-11-01T16:30:00.000000Z"
    assert (event["method"], event["basis"], event["note"]) == ("web_form", "consent", "test drive form")
    status, page = await ledger(api, "acme-motors", role, "C1")
    assert page["events"] == [event]
    # Bravo's C1 is another person.
    assert (await ledger(api, "bravo-cars", role, "C1"))[1]["events"] == []


@pytest.mark.parametrize("role", ROLES)
async def test_ledger_is_readable_by_every_role_within_its_tenant(api: Api, role: str) -> None:
    await post(api, "acme-motors", "admin", "C2", {"events": [{**GRANT, "address": None}]})
    status, page = await ledger(api, "acme-motors", role, "C2")
    assert status == 200 and len(page["events"]) == 1
    # C2 is not a contact of Bravo: 404, the same as a contact that does not exist.
    assert (await ledger(api, "bravo-cars", role, "C2"))[0] == 404
    assert (await post(api, "bravo-cars", "admin", "C2", GRANT))[0] == 404


async def test_a_list_is_all_or_nothing_with_located_errors(api: Api) -> None:
    events = [
        GRANT,
        {**GRANT, "class": "gossip", "party": "fourth"},
        {"action": "opt_out", "channel": "sms", "method": "verbal", "occurred_at": "2026-11-01"},
        {**GRANT, "actor": "someone else"},
    ]
    status, body, _h = await post(api, "acme-motors", "sales", "C1", {"events": events})
    assert status == 422
    fields = [error["field"] for error in body["errors"]]
    assert fields == [
        "events[1].class", "events[1].party", "events[2].channel", "events[2].occurred_at", "events[3].actor",
    ]
    assert (await ledger(api, "acme-motors", "admin", "C1"))[1]["events"] == []
    # One event: its fields are the body's.
    status, body, _h = await post(api, "acme-motors", "sales", "C1", {**GRANT, "action": "forget"})
    assert status == 422 and body["errors"][0]["field"] == "action"


async def test_messages_are_the_consent_imports(api: Api, tmp_path: Path) -> None:
    bad = {"action": "revoke", "channel": "fax", "class": "gossip", "method": "verbal", "occurred_at": "yesterday"}
    status, body, _h = await post(api, "acme-motors", "admin", "C1", bad)
    assert status == 422
    given = {error["field"]: error["message"] for error in body["errors"]}
    path = tmp_path / "consent.csv"
    path.write_text("external_id,action,channel,class,method,occurred_at\nC1,revoke,fax,gossip,verbal,yesterday\n")
    with pytest.raises(InputErrors) as raised:
        await import_consent_events(api.engine, str(path), "acme-motors", workers=0, clock=CLOCK)
    assert {error.field: error.message for error in raised.value.errors} == given


async def test_ledger_pages_newest_first_by_cursor(api: Api) -> None:
    events = [{**GRANT, "occurred_at": f"2026-11-0{day}T09:00:00Z", "note": f"n{day}"} for day in range(1, 6)]
    status, body, _h = await post(api, "acme-motors", "manager", "C3", {"events": events})
    assert status == 201 and [e["note"] for e in body["events"]] == ["n1", "n2", "n3", "n4", "n5"]
    notes, before = [], None
    while True:
        status, page = await ledger(api, "acme-motors", "sales", "C3", "?limit=2" + (f"&before={before}" if before else ""))
        notes += [e["note"] for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert notes == ["n5", "n4", "n3", "n2", "n1"]


async def test_idempotency_key_on_append(api: Api) -> None:
    key = {"Idempotency-Key": "dms-event-981"}
    first = await post(api, "acme-motors", "sales", "C4", GRANT | {"address": None}, key)
    again = await post(api, "acme-motors", "sales", "C4", GRANT | {"address": None}, key)
    assert first[0] == again[0] == 201 and first[1] == again[1]
    assert again[2].get("Idempotent-Replayed") == "true"
    assert len((await ledger(api, "acme-motors", "admin", "C4"))[1]["events"]) == 1
    other = await post(api, "acme-motors", "sales", "C4", GRANT | {"address": None, "note": "changed"}, key)
    assert other[0] == 422 and other[1]["errors"][0]["field"] == "Idempotency-Key"
    # The same body to another contact is another request.
    assert (await post(api, "acme-motors", "sales", "C3", GRANT | {"address": None}, key))[0] == 422


async def test_unknown_contact_is_404(api: Api) -> None:
    assert (await post(api, "acme-motors", "admin", "NOBODY", GRANT))[0] == 404
    assert (await ledger(api, "acme-motors", "admin", "NOBODY"))[0] == 404
