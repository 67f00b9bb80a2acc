"""The JSON API: keys, roles, tenant isolation, explain, check, status, policy, health."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from sqlalchemy import update

from campaigns.definition import parse_campaign
from engine.clock import system_clock
from engine.db.models import ApiKey
from engine.send.launch import launch
from tests.api.conftest import ACME, Api

CAMPAIGN = {
    "campaign": "spring-offer",
    "kind": "bulk",
    "channel": "email",
    "class": "marketing",
    "template": "spring_offer",
    "subject": "Your spring service offer",
    "sender": {"email": "service@acme.example", "name": "Acme Service"},
}
ACME_POLICY = {
    "tenant": "acme-motors",
    "name": "Acme Motors",
    "regime": "opt_out",
    "country": "US",
    "timezone": "America/Los_Angeles",
    "classes": {"marketing": {"mode": "opt_out"}, "service": {"mode": "opt_out"}, "transactional": {"mode": "exempt"}},
    "quiet_hours": {"start": "21:00", "end": "08:00"},
}
EXPLAIN = "/api/v1/contacts/{}/explain?channel=email&class=marketing"


async def test_no_key_unknown_key_and_revoked_key_are_401(api: Api) -> None:
    path = api.url(EXPLAIN.format("C1"))
    for headers in ({}, {"Authorization": "Bearer csk_nope"}, {"Authorization": "Basic abc"}):
        async with api.session.get(path, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error" in await response.json()
    headers = api.auth("acme-motors", "sales")
    async with api.session.get(path, headers=headers) as response:
        assert response.status == 200
    async with api.engine.begin() as conn:
        await conn.execute(update(ApiKey).values(revoked_at_us=1))
    async with api.session.get(path, headers=headers) as response:
        assert response.status == 401


@pytest.mark.parametrize(
    ("role", "expected"), [("admin", 200), ("manager", 200), ("marketer", 403), ("sales", 403)]
)
async def test_only_admins_and_managers_change_the_policy(api: Api, role: str, expected: int) -> None:
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=ACME_POLICY, headers=api.auth("acme-motors", role)) as response:
        assert response.status == expected, await response.text()
        body = await response.json()
    async with api.session.get(api.url("/api/v1/tenant/policy"), headers=api.auth("acme-motors", "sales")) as response:
        current = await response.json()
    if expected == 200:
        assert (body["policy_version"], body["changed"]) == (2, True)
        assert current["policy"]["quiet_hours"] == {"start": "21:00", "end": "08:00"}
        assert "survey" not in current["policy"]["classes"]
    else:
        assert body["error"] == f"role '{role}' may not write policy"
        assert current["policy_version"] == 1


async def test_putting_the_same_policy_twice_records_one_version(api: Api) -> None:
    headers = api.auth("acme-motors", "manager")
    versions = []
    for _ in range(2):
        async with api.session.put(api.url("/api/v1/tenant/policy"), json=ACME_POLICY, headers=headers) as response:
            versions.append((await response.json())["policy_version"])
    assert versions == [2, 2]


async def test_an_invalid_policy_is_422_with_every_field(api: Api) -> None:
    policy = {**ACME_POLICY, "regime": "maybe", "classes": {"marketing": {"mode": "sometimes"}}, "colour": "red"}
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=policy, headers=api.auth("acme-motors", "admin")) as response:
        assert response.status == 422
        errors = (await response.json())["errors"]
    fields = {error["field"] for error in errors}
    assert fields == {"regime", "classes.marketing.mode", "colour"}
    assert all(error["message"] for error in errors)


@pytest.mark.parametrize("timezone", ["America", "Etc", "America/" + "x" * 300, "../../etc/passwd"])
async def test_a_timezone_that_is_no_zone_is_422_naming_the_field(api: Api, timezone: str) -> None:
    policy = {**ACME_POLICY, "timezone": timezone}
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=policy, headers=api.auth("acme-motors", "admin")) as response:
        assert response.status == 422, await response.text()
        errors = (await response.json())["errors"]
    assert [error["field"] for error in errors] == ["timezone"]
    assert "IANA time zone" in errors[0]["message"]


async def test_a_key_cannot_write_another_tenants_policy(api: Api) -> None:
    policy = {**ACME_POLICY, "tenant": "bravo-cars", "name": "Taken Over"}
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=policy, headers=api.auth("acme-motors", "admin")) as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["field"] == "tenant"
    async with api.session.get(api.url("/api/v1/tenant/policy"), headers=api.auth("bravo-cars", "sales")) as response:
        assert (await response.json())["policy"]["name"] == "Bravo Cars"


async def test_explain_sees_only_the_keys_tenant(api: Api) -> None:
    acme, bravo = api.auth("acme-motors", "sales"), api.auth("bravo-cars", "sales")
    async with api.session.get(api.url(EXPLAIN.format("B1")), headers=acme) as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with api.session.get(api.url(EXPLAIN.format("B1")), headers=bravo) as response:
        assert response.status == 200
    # Both tenants have a C1: each key sees its own.
    async with api.session.get(api.url(EXPLAIN.format("C1")), headers=acme) as response:
        assert (await response.json())["address"] == "ava@example.com"
    async with api.session.get(api.url(EXPLAIN.format("C1")), headers=bravo) as response:
        body = await response.json()
    assert (body["tenant"], body["address"]) == ("bravo-cars", "carl@bravo.example")


async def test_explain_lists_every_rule(api: Api) -> None:
    path = EXPLAIN.format("C1") + "&party=first&kind=bulk&at=2026-11-24T18:00:00Z"
    async with api.session.get(api.url(path), headers=api.auth("acme-motors", "marketer")) as response:
        assert response.status == 200
        body = await response.json()
    assert body["decision"]["decision"] == "send"
    assert body["at"] == "2026-11-24T18:00:00Z"
    assert [rule["number"] for rule in body["rules"]] == list(range(1, 13))


async def test_explain_bad_parameters_are_422_naming_each(api: Api) -> None:
    path = "/api/v1/contacts/C1/explain?channel=fax&party=fourth&at=yesterday"
    async with api.session.get(api.url(path), headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 422
        fields = [error["field"] for error in (await response.json())["errors"]]
    assert fields == ["channel", "class", "party", "at"]
    async with api.session.get(api.url(EXPLAIN.format("C1").replace("marketing", "gossip")), headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["field"] == "class"


@pytest.mark.parametrize(("role", "expected"), [("admin", 200), ("manager", 200), ("marketer", 200), ("sales", 403)])
async def test_who_may_check_a_campaign(api: Api, role: str, expected: int) -> None:
    async with api.session.post(api.url("/api/v1/campaigns/check"), json=CAMPAIGN, headers=api.auth("acme-motors", role)) as response:
        assert response.status == expected, await response.text()
        body = await response.json()
    if expected == 200:
        assert (body["campaign"], body["tenant"], body["total"]) == ("spring-offer", "acme-motors", 4)
        assert body["counts"] == [{"decision": "send", "reason": "", "count": 4, "percent": 100.0}]


async def test_check_records_nothing_and_counts_suppressions(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.post(api.url(f"/u/{token}"), data={"List-Unsubscribe": "One-Click"}):
        pass
    before = await api.events()
    async with api.session.post(api.url("/api/v1/campaigns/check"), json=CAMPAIGN, headers=api.auth("acme-motors", "marketer")) as response:
        body = await response.json()
    counts = {(c["decision"], c["reason"]): c["count"] for c in body["counts"]}
    assert counts == {("send", ""): 3, ("suppress", "consent_revoked"): 1}
    assert await api.events() == before


async def test_check_bad_fields_are_422(api: Api) -> None:
    bad = {**CAMPAIGN, "channel": "fax", "kind": "sometimes"}
    del bad["template"]
    async with api.session.post(api.url("/api/v1/campaigns/check"), json=bad, headers=api.auth("acme-motors", "marketer")) as response:
        assert response.status == 422
        errors = (await response.json())["errors"]
    assert {error["field"] for error in errors} == {"channel", "kind", "template"}
    unknown_class = {**CAMPAIGN, "class": "gossip"}
    async with api.session.post(api.url("/api/v1/campaigns/check"), json=unknown_class, headers=api.auth("acme-motors", "marketer")) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["class"]
    for body in ("[1, 2]", "{not json"):
        async with api.session.post(api.url("/api/v1/campaigns/check"), data=body, headers=api.auth("acme-motors", "marketer")) as response:
            assert response.status == 422
    other = {**CAMPAIGN, "tenant": "bravo-cars"}
    async with api.session.post(api.url("/api/v1/campaigns/check"), json=other, headers=api.auth("acme-motors", "marketer")) as response:
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["tenant"]


async def test_campaign_status_is_per_tenant(api: Api) -> None:
    bravo = api.tenants["bravo-cars"]
    definition = parse_campaign({**CAMPAIGN, "tenant": bravo.code})
    async with api.engine.begin() as conn:
        await launch(conn, definition, bravo, {}, system_clock())
    path = api.url("/api/v1/campaigns/spring-offer/status")
    async with api.session.get(path, headers=api.auth("acme-motors", "marketer")) as response:
        assert response.status == 404
    async with api.session.get(path, headers=api.auth("bravo-cars", "marketer")) as response:
        assert response.status == 200
        body = await response.json()
    assert (body["campaign"], body["status"], body["channel"], body["total"]) == ("spring-offer", "running", "email", 0)
    async with api.session.get(path, headers=api.auth("bravo-cars", "sales")) as response:
        assert response.status == 403


async def test_health_metrics_and_unknown_routes(api: Api) -> None:
    async with api.session.get(api.url("/healthz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    async with api.session.get(api.metrics_url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert "consentry_decisions" in await response.text()
    # Not on the public listener: the series name every tenant.
    async with api.session.get(api.url("/metrics")) as response:
        assert response.status == 404
        assert "acme-motors" not in await response.text()
    async with api.session.get(api.url("/api/v1/nothing"), headers=api.auth("acme-motors", "admin")) as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with api.session.delete(api.url("/api/v1/tenant/policy"), headers=api.auth("acme-motors", "admin")) as response:
        assert response.status == 405
        assert "PUT" in response.headers["Allow"]


def test_acme_fixture_policy_is_what_the_tests_assume() -> None:
    assert "survey: {mode: opt_in}" in ACME


async def test_settings_are_versioned_with_who_and_when_and_updated_only_on_the_version_read(api: Api) -> None:
    admin, manager = api.auth("acme-motors", "admin"), api.auth("acme-motors", "manager")
    async with api.session.get(api.url("/api/v1/tenant/policy"), headers=admin) as response:
        first = await response.json()
        tag = response.headers["ETag"]
    assert (tag, first["policy_version"], first["applied_by"]) == ('"policy-1"', 1, None)  # seeded before keys existed

    # A manager changes the settings on the version it read...
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=ACME_POLICY, headers={**manager, "If-Match": tag}) as response:
        assert response.status == 200, await response.text()
        applied = await response.json()
        new_tag = response.headers["ETag"]
    assert (new_tag, applied["policy_version"], applied["applied_by"], applied["changed"]) == ('"policy-2"', 2, "manager key", True)
    assert applied["applied_at"].endswith("Z")

    # ...so an admin still holding version 1 is refused, and nothing changes.
    stale = {**ACME_POLICY, "name": "Acme Motors Group"}
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=stale, headers={**admin, "If-Match": tag}) as response:
        assert response.status == 412
        assert response.headers["ETag"] == new_tag
        assert "current version is 2" in (await response.json())["error"]
    async with api.session.get(api.url("/api/v1/tenant/policy"), headers=admin) as response:
        assert (await response.json())["policy"]["name"] == ACME_POLICY["name"]
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=stale, headers={**admin, "If-Match": new_tag}) as response:
        assert response.status == 200 and (await response.json())["applied_by"] == "admin key"


async def test_errors_are_rfc_9457_problem_details(api: Api) -> None:
    async with api.session.get(api.url("/api/v1/tenant/policy")) as response:
        assert response.status == 401
        body = await response.json()
    assert {key: body[key] for key in ("type", "title", "status")} == {"type": "about:blank", "title": "Unauthorized", "status": 401}
    assert body["detail"] == body["error"]
    policy = {**ACME_POLICY, "regime": "maybe"}
    async with api.session.put(api.url("/api/v1/tenant/policy"), json=policy, headers=api.auth("acme-motors", "admin")) as response:
        body = await response.json()
    assert (body["status"], body["title"], body["detail"]) == (422, HTTPStatus(422).phrase, "1 field of the request is invalid")
    assert [error["field"] for error in body["errors"]] == ["regime"]
