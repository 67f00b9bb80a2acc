"""The contacts resource over HTTP: upsert one and in batches, read, search; each role,
both tenants (Bravo has its own C1), the import's validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.errors import InputErrors
from engine.imports import import_contacts
from tests.api.conftest import CLOCK, ROLES, Api

WRITERS = ("admin", "manager", "sales")


async def put(api: Api, tenant: str, role: str, external_id: str, body: dict) -> tuple[int, dict]:
    async with api.session.put(api.url(f"/api/v1/contacts/{external_id}"), json=body, headers=api.auth(tenant, role)) as r:
        return r.status, await r.json()


async def get(api: Api, tenant: str, role: str, path: str) -> tuple[int, dict]:
    async with api.session.get(api.url(path), headers=api.auth(tenant, role)) as r:
        return r.status, await r.json()


async def post(api: Api, tenant: str, role: str, path: str, body: object, headers: dict | None = None):
    async with api.session.post(api.url(path), json=body, headers={**api.auth(tenant, role), **(headers or {})}) as r:
        return r.status, await r.json(), r.headers


@pytest.mark.parametrize("role", ROLES)
async def test_put_creates_then_updates_for_writers_only(api: Api, role: str) -> None:
    body = {"first_name": "Mia", "last_name": "Wong", "email": "Mia@Example.COM", "phone": "(213) 555-0199"}
    status, shown = await put(api, "acme-motors", role, "N1", body)
    if role not in WRITERS:
        assert status == 403 and "may not write contacts" in shown["error"]
        assert (await get(api, "acme-motors", "admin", "/api/v1/contacts/N1"))[0] == 404
        return
    assert status == 201, shown
    assert shown["external_id"] == "N1" and shown["first_name"] == "Mia"
    assert shown["addresses"] == [
        {"kind": "email", "address": "Mia@example.com", "valid": True},
        {"kind": "phone", "address": "+12135550199", "valid": True},
    ]
    status, shown = await put(api, "acme-motors", role, "N1", {"last_name": "Wong-Li", "first_name": None})
    assert status == 200
    # Absent and null keep the stored value, as an empty cell of a file does.
    assert (shown["first_name"], shown["last_name"]) == ("Mia", "Wong-Li")
    assert len(shown["addresses"]) == 2


async def test_without_a_key_is_401(api: Api) -> None:
    async with api.session.put(api.url("/api/v1/contacts/N1"), json={}) as r:
        assert r.status == 401
    async with api.session.get(api.url("/api/v1/contacts?q=ava")) as r:
        assert r.status == 401


async def test_invalid_contact_names_each_field_with_the_import_message(api: Api, tmp_path: Path) -> None:
    status, body = await put(api, "acme-motors", "admin", "N2", {
        "email": "not-an-address", "phone": "call me", "country": "Narnia", "timezone": "Mars/Base",
        "shoe_size": "9", "marketing_opt_in": "yes",
    })
    assert status == 422
    fields = {error["field"]: error["message"] for error in body["errors"]}
    assert set(fields) == {"email", "phone", "country", "timezone", "shoe_size", "marketing_opt_in"}
    # The same cells in a contacts file get the same messages from the CSV import.
    path = tmp_path / "bad.csv"
    path.write_text("external_id,email,phone,country,timezone\nN2,not-an-address,call me,Narnia,Mars/Base\n")
    with pytest.raises(InputErrors) as raised:
        await import_contacts(api.engine, str(path), "acme-motors", workers=0, clock=CLOCK)
    for error in raised.value.errors:
        assert fields[error.field] == error.message
    assert (await get(api, "acme-motors", "admin", "/api/v1/contacts/N2"))[0] == 404


async def test_external_id_in_body_must_match_url(api: Api) -> None:
    status, body = await put(api, "acme-motors", "admin", "N3", {"external_id": "OTHER"})
    assert status == 422 and body["errors"][0]["field"] == "external_id"


async def test_marketing_opt_in_changes_are_audited_ledger_events(api: Api) -> None:
    ledger = "/api/v1/contacts/C1/consent-events"
    assert (await get(api, "acme-motors", "sales", ledger))[1]["events"] == []
    status, shown = await put(api, "acme-motors", "sales", "C1", {"marketing_opt_in": False})
    assert status == 200 and shown["marketing_opt_in"] is False
    # The same value again is no change: no second event.
    await put(api, "acme-motors", "manager", "C1", {"marketing_opt_in": False})
    status, shown = await put(api, "acme-motors", "admin", "C1", {"marketing_opt_in": True})
    assert shown["marketing_opt_in"] is True
    events = (await get(api, "acme-motors", "marketer", ledger))[1]["events"]
    assert [(e["action"], e["method"], e["actor"]) for e in events] == [
        ("opt_in", "api", "admin key"), ("opt_out", "api", "sales key"),
    ]
    # A new lead who ticked the box: the tick is kept as an opt_in.
    await put(api, "acme-motors", "sales", "N4", {"first_name": "Zoe", "marketing_opt_in": True})
    events = (await get(api, "acme-motors", "sales", "/api/v1/contacts/N4/consent-events"))[1]["events"]
    assert [(e["action"], e["actor"]) for e in events] == [("opt_in", "sales key")]
    # Bravo's C1 is another person: untouched.
    assert (await get(api, "bravo-cars", "admin", ledger))[1]["events"] == []


@pytest.mark.parametrize("role", ROLES)
async def test_get_shows_addresses_and_consent_through_gating(api: Api, role: str) -> None:
    status, shown = await get(api, "acme-motors", role, "/api/v1/contacts/C1")
    assert status == 200
    assert (shown["first_name"], shown["marketing_opt_in"]) == ("Ava", True)
    boxes = {(c["channel"], c["class"], c["party"]): c for c in shown["consent"]}
    # Acme's policy: marketing and service opt_out (consented until revoked), survey
    # opt_in (not consented without a grant), transactional exempt (not a choice).
    assert boxes[("email", "marketing", "first")]["consented"] is True
    assert boxes[("email", "survey", "first")]["consented"] is False
    assert not any(c["class"] == "transactional" for c in shown["consent"])
    # Bravo's key reads Bravo's C1, never Acme's.
    status, other = await get(api, "bravo-cars", role, "/api/v1/contacts/C1")
    assert status == 200 and other["first_name"] == "Carl"
    assert (await get(api, "bravo-cars", role, "/api/v1/contacts/C2"))[0] == 404


async def test_consent_shown_follows_a_recorded_revoke(api: Api) -> None:
    status, _body, _h = await post(api, "acme-motors", "sales", "/api/v1/contacts/C1/consent-events", {
        "action": "revoke", "channel": "email", "class": "marketing", "method": "verbal",
        "occurred_at": "2020-01-01T10:00:00-05:00",
    })
    assert status == 201
    shown = (await get(api, "acme-motors", "marketer", "/api/v1/contacts/C1"))[1]
    boxes = {(c["channel"], c["class"], c["party"]): c for c in shown["consent"]}
    assert boxes[("email", "marketing", "first")]["consented"] is False
    assert boxes[("email", "marketing", "first")]["revoked"] is True
    assert boxes[("sms", "marketing", "first")]["revoked"] is False


@pytest.mark.parametrize("role", ROLES)
async def test_batch_upsert_for_writers_only(api: Api, role: str) -> None:
    body = {"contacts": [
        {"external_id": "C2", "region": "West"},
        {"external_id": "N10", "first_name": "Ada", "email": "ada@example.com"},
        {"external_id": "N11", "phone": "+1 213 555 0177", "marketing_opt_in": False},
    ]}
    status, result, _h = await post(api, "acme-motors", role, "/api/v1/contacts/batch", body)
    if role not in WRITERS:
        assert status == 403
        return
    assert status == 200, result
    assert (result["created"], result["updated"]) == (2, 1)
    assert [c["created"] for c in result["contacts"]] == [False, True, True]
    shown = (await get(api, "acme-motors", role, "/api/v1/contacts/C2"))[1]
    assert (shown["first_name"], shown["region"]) == ("Liam", "West")
    assert (await get(api, "acme-motors", role, "/api/v1/contacts/N11"))[1]["marketing_opt_in"] is False
    # Bravo has no N10.
    assert (await get(api, "bravo-cars", role, "/api/v1/contacts/N10"))[0] == 404


async def test_a_large_batch_stores_what_a_small_one_does(api: Api) -> None:
    # 300 contacts: PostgreSQL writes them with COPY and one merge (engine/imports/staging.py).
    body = {"contacts": [
        {"external_id": f"N{i}", "first_name": f"Ann{i}", "email": f"ann{i}@Example.com",
         **({"marketing_opt_in": False} if i % 3 == 0 else {})}
        for i in range(300)
    ] + [{"external_id": "C2", "region": "West"}]}
    status, result, _h = await post(api, "acme-motors", "admin", "/api/v1/contacts/batch", body)
    assert status == 200, result
    assert (result["created"], result["updated"]) == (300, 1)
    shown = (await get(api, "acme-motors", "admin", "/api/v1/contacts/N3"))[1]
    assert (shown["first_name"], shown["marketing_opt_in"]) == ("Ann3", False)
    assert [(a["kind"], a["address"]) for a in shown["addresses"]] == [("email", "ann3@example.com")]
    assert (await get(api, "acme-motors", "admin", "/api/v1/contacts/C2"))[1]["first_name"] == "Liam"

    # Again with new addresses and no names: every row an update, names kept.
    again = {"contacts": [{"external_id": f"N{i}", "email": f"new{i}@example.com"} for i in range(300)]}
    status, result, _h = await post(api, "acme-motors", "admin", "/api/v1/contacts/batch", again)
    assert status == 200, result
    assert (result["created"], result["updated"]) == (0, 300)
    shown = (await get(api, "acme-motors", "admin", "/api/v1/contacts/N299"))[1]
    assert shown["first_name"] == "Ann299"
    assert [(a["kind"], a["address"]) for a in shown["addresses"]] == [("email", "new299@example.com")]


async def test_batch_is_all_or_nothing_with_located_errors(api: Api) -> None:
    body = {"contacts": [
        {"external_id": "N20", "first_name": "Ok"},
        {"external_id": "N21", "email": "nope"},
        {"external_id": "N20"},
        {"first_name": "No id"},
        "not an object",
    ]}
    status, result, _h = await post(api, "acme-motors", "admin", "/api/v1/contacts/batch", body)
    assert status == 422
    fields = [error["field"] for error in result["errors"]]
    assert fields == ["contacts[1].email", "contacts[2].external_id", "contacts[3].external_id", "contacts[4]"]
    assert "repeats contacts[0]" in result["errors"][1]["message"]
    assert (await get(api, "acme-motors", "admin", "/api/v1/contacts/N20"))[0] == 404
    too_many = {"contacts": [{"external_id": f"X{i}"} for i in range(1001)]}
    status, result, _h = await post(api, "acme-motors", "admin", "/api/v1/contacts/batch", too_many)
    assert status == 422 and result["errors"][0]["field"] == "contacts"


async def test_batch_idempotency_key_replays_and_refuses_another_body(api: Api) -> None:
    body = {"contacts": [{"external_id": "N30", "first_name": "Once", "marketing_opt_in": True}]}
    key = {"Idempotency-Key": "sync-2026-11-30-page-1"}
    first = await post(api, "acme-motors", "sales", "/api/v1/contacts/batch", body, key)
    again = await post(api, "acme-motors", "sales", "/api/v1/contacts/batch", body, key)
    assert first[0] == again[0] == 200
    assert first[1] == again[1] and first[1]["created"] == 1
    assert again[2].get("Idempotent-Replayed") == "true"
    # Not written twice: one opt_in, not two.
    events = (await get(api, "acme-motors", "admin", "/api/v1/contacts/N30/consent-events"))[1]["events"]
    assert len(events) == 1
    other = await post(api, "acme-motors", "sales", "/api/v1/contacts/batch", {"contacts": [{"external_id": "N31"}]}, key)
    assert other[0] == 422 and other[1]["errors"][0]["field"] == "Idempotency-Key"
    # Keys are per tenant: Bravo's same key is a new request.
    bravo = await post(api, "bravo-cars", "sales", "/api/v1/contacts/batch", body, key)
    assert bravo[0] == 200 and bravo[1]["created"] == 1 and "Idempotent-Replayed" not in bravo[2]


@pytest.mark.parametrize("role", ROLES)
async def test_search_by_name_email_phone_external_id(api: Api, role: str) -> None:
    async def ids(tenant: str, query: str) -> list[str]:
        status, page = await get(api, tenant, role, f"/api/v1/contacts?{query}")
        assert status == 200, page
        return [c["external_id"] for c in page["contacts"]]

    assert await ids("acme-motors", "q=garcia") == ["C2", "C3"]
    assert await ids("acme-motors", "q=Emma%20Gar") == ["C3"]
    assert await ids("acme-motors", "q=AVA@example") == ["C1"]
    assert await ids("acme-motors", "q=(213)%20555-0102") == ["C2", "C3"]
    assert await ids("acme-motors", "q=C4") == ["C4"]
    assert await ids("acme-motors", "q=%25") == []  # a LIKE wildcard is just a character
    assert await ids("bravo-cars", "q=ava") == []
    assert await ids("bravo-cars", "q=C1") == ["C1"]
    # Cursor pagination walks every contact once.
    seen, after = [], None
    while True:
        status, page = await get(api, "acme-motors", role, "/api/v1/contacts?limit=3" + (f"&after={after}" if after else ""))
        seen += [c["external_id"] for c in page["contacts"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ["C1", "C2", "C3", "C4"]


async def test_search_rejects_a_bad_limit(api: Api) -> None:
    status, body = await get(api, "acme-motors", "admin", "/api/v1/contacts?limit=0")
    assert status == 422 and body["errors"][0]["field"] == "limit"
