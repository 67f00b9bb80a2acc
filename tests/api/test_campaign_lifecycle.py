"""Campaigns over the API: create, check, launch, pause, resume, cancel, the deliveries export.

The service here sends for real, to the capture SMTP server on loopback (both run on the
test's loop): a launch is a background task of the serving process (launch backend
"inline"). Both tenants have a campaign `spring-offer`; neither key reaches the other's.
The pause as every runner obeys it, with real processes: tests/engine/test_api_pause.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import Settings
from engine.errors import InputError
from engine.send.report import EXPORT_COLUMNS
from tests.api.conftest import (
    ROLES,
    Api,
    service_with_relay,
)

CAMPAIGN = {
    "campaign": "spring-offer",
    "kind": "bulk",
    "channel": "email",
    "class": "marketing",
    "template": "spring_offer",
    "subject": "Your spring service offer",
    "sender": {"email": "service@acme.example", "name": "Acme Service"},
}
BRAVO_CAMPAIGN = {**CAMPAIGN, "sender": {"email": "service@bravo.example", "name": "Bravo Service"}}
ACTIONS = ("check", "launch", "pause", "resume", "cancel")
WRITERS = ("admin", "manager", "marketer")


@pytest.fixture
async def capi(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The `api` fixture's service, with a relay to send to and quick retries."""
    async with service_with_relay(db_url, tmp_path) as service:
        yield service


async def _post(api: Api, path: str, tenant: str, role: str, body: dict | None = None) -> tuple[int, dict]:
    async with api.session.post(api.url(path), json=body, headers=api.auth(tenant, role)) as response:
        return response.status, await response.json()


async def _create(api: Api, tenant: str = "acme-motors", body: dict | None = None) -> None:
    status, created = await _post(api, "/api/v1/campaigns", tenant, "marketer", body or CAMPAIGN)
    assert status == 201, created


async def _finished(api: Api, tenant: str, code: str = "spring-offer", timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with api.session.get(api.url(f"/api/v1/campaigns/{code}/status"), headers=api.auth(tenant, "admin")) as r:
            body = await r.json()
        if body["status"] not in ("running",):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_create_a_campaign(capi: Api, role: str) -> None:
    status, body = await _post(capi, "/api/v1/campaigns", "acme-motors", role, CAMPAIGN)
    if role in ("sales", "viewer"):
        assert status == 403
        return
    assert status == 201, body
    assert body == {"campaign": "spring-offer", "tenant": "acme-motors", "status": "draft", "channel": "email",
                    "kind": "bulk", "class": "marketing", "template": "spring_offer"}
    # Nothing is gated or sent by a create.
    assert (await _finished(capi, "acme-motors"))["total"] == 0
    assert capi.smtp.accepted == 0  # type: ignore[attr-defined]


async def test_no_key_is_401_everywhere(capi: Api) -> None:
    await _create(capi)
    paths = ["/api/v1/campaigns", *(f"/api/v1/campaigns/spring-offer/{action}" for action in ACTIONS)]
    for path in paths:
        async with capi.session.post(capi.url(path), json=CAMPAIGN) as response:
            assert response.status == 401, path
    async with capi.session.get(capi.url("/api/v1/campaigns/spring-offer/deliveries")) as response:
        assert response.status == 401


async def test_create_is_idempotent_by_code_and_validates_like_campaign_yaml(capi: Api) -> None:
    await _create(capi)
    assert await _post(capi, "/api/v1/campaigns", "acme-motors", "admin", CAMPAIGN) == (200, {
        "campaign": "spring-offer", "tenant": "acme-motors", "status": "draft", "channel": "email", "kind": "bulk",
        "class": "marketing", "template": "spring_offer"})
    status, body = await _post(capi, "/api/v1/campaigns", "acme-motors", "admin", {**CAMPAIGN, "subject": "Other"})
    assert status == 409 and "another definition" in body["error"]

    async def fields(body: dict) -> set[str]:
        status, answer = await _post(capi, "/api/v1/campaigns", "acme-motors", "marketer", body)
        assert status == 422, answer
        return {error["field"] for error in answer["errors"]}

    bad = {**CAMPAIGN, "campaign": "x", "channel": "fax", "kind": "sometimes"}
    del bad["template"]
    assert await fields(bad) == {"channel", "kind", "template"}
    assert await fields({**CAMPAIGN, "campaign": "y", "class": "gossip"}) == {"class"}
    assert await fields({**CAMPAIGN, "campaign": "y", "template": "no_such_template"}) == {"template"}
    # No path to a file of the server's, however it is spelt.
    assert await fields({**CAMPAIGN, "campaign": "y", "template": "../../etc/passwd"}) == {"template"}
    assert await fields({**CAMPAIGN, "campaign": "y", "tenant": "bravo-cars"}) == {"tenant"}


@pytest.mark.parametrize("role", ROLES)
async def test_every_action_by_role(capi: Api, role: str) -> None:
    """Every action with every role: sales and viewers are refused; the others get past the
    role check (the answer is then the campaign's: a draft cannot be paused or resumed). A
    viewer reads the deliveries."""
    await _create(capi)
    expected = {"check": 200, "pause": 409, "resume": 409, "cancel": 200, "launch": 409}
    for action in ("check", "pause", "resume", "cancel", "launch"):  # launch after cancel: 409
        status, body = await _post(capi, f"/api/v1/campaigns/spring-offer/{action}", "acme-motors", role)
        assert status == (403 if role in ("sales", "viewer") else expected[action]), (action, body)
    async with capi.session.get(capi.url("/api/v1/campaigns/spring-offer/deliveries"), headers=capi.auth("acme-motors", role)) as r:
        assert r.status == (403 if role == "sales" else 200)


@pytest.mark.parametrize("role", WRITERS)
async def test_another_tenants_campaign_is_404_for_every_endpoint(capi: Api, role: str) -> None:
    # Both tenants have `spring-offer`; only Bravo has `bravo-only`.
    await _create(capi)
    await _create(capi, "bravo-cars", BRAVO_CAMPAIGN)
    await _create(capi, "bravo-cars", {**BRAVO_CAMPAIGN, "campaign": "bravo-only"})
    for action in ACTIONS:
        status, _body = await _post(capi, f"/api/v1/campaigns/bravo-only/{action}", "acme-motors", role)
        assert status == 404, action
    for path in ("status", "deliveries"):
        async with capi.session.get(capi.url(f"/api/v1/campaigns/bravo-only/{path}"), headers=capi.auth("acme-motors", role)) as r:
            assert r.status == 404, path
    # Same code, each tenant its own: Acme's check counts Acme's four contacts, Bravo's two.
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/check", "acme-motors", role))[1]["total"] == 4
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/check", "bravo-cars", role))[1]["total"] == 2
    # Cancelling Acme's leaves Bravo's draft alone.
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/cancel", "acme-motors", role))[0] == 200
    assert (await _finished(capi, "bravo-cars"))["status"] == "draft"


async def test_launch_sends_once_and_the_export_streams_what_happened(capi: Api) -> None:
    await _create(capi)
    await _create(capi, "bravo-cars", BRAVO_CAMPAIGN)
    status, body = await _post(capi, "/api/v1/campaigns/spring-offer/launch", "acme-motors", "manager")
    assert (status, body["status"], body["backend"], body["started"]) == (202, "running", "inline", True)
    done = await _finished(capi, "acme-motors")
    assert (done["status"], done["outcomes"]) == ("finished", {"sent": 4})
    assert sorted(m["to"] for m in capi.smtp.messages) == [  # type: ignore[attr-defined]
        "ava@example.com", "emma@example.com", "liam@example.com", "noah@example.com"]
    # Bravo's campaign of the same code was not launched.
    assert (await _finished(capi, "bravo-cars"))["status"] == "draft"
    # Launching again continues a finished campaign: refused, nothing resent.
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/launch", "acme-motors", "manager"))[0] == 409

    path = "/api/v1/campaigns/spring-offer/deliveries"
    async with capi.session.get(capi.url(path), headers=capi.auth("acme-motors", "marketer")) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(await r.text())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert sorted(row[0] for row in rows[1:]) == ["C1", "C2", "C3", "C4"]
    assert {row[EXPORT_COLUMNS.index("state")] for row in rows[1:]} == {"sent"}
    async with capi.session.get(capi.url(path), params={"format": "ndjson", "state": "sent", "decision": "send"},
                                headers=capi.auth("acme-motors", "admin")) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert sorted(line["external_id"] for line in lines) == ["C1", "C2", "C3", "C4"]
    assert all(set(line) == set(EXPORT_COLUMNS) and line["reason"] is None for line in lines)
    async with capi.session.get(capi.url(path), params={"format": "ndjson", "state": "pending"},
                                headers=capi.auth("acme-motors", "admin")) as r:
        assert await r.text() == ""
    for params, field in (({"format": "xml"}, "format"), ({"decision": "maybe"}, "decision"), ({"state": "lost"}, "state")):
        async with capi.session.get(capi.url(path), params=params, headers=capi.auth("acme-motors", "admin")) as r:
            assert r.status == 422
            assert [e["field"] for e in (await r.json())["errors"]] == [field]


async def test_pause_resume_and_cancel_with_recipients_left(capi: Api) -> None:
    smtp = capi.smtp  # type: ignore[attr-defined]
    smtp.tempfail = ["@example.com"]  # every Acme contact: left pending after the retries
    await _create(capi)
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/pause", "acme-motors", "admin"))[0] == 409  # a draft
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/launch", "acme-motors", "admin"))[0] == 202
    left = await _finished(capi, "acme-motors")
    assert (left["status"], left["outcomes"]) == ("incomplete", {"pending": 4})

    status, paused = await _post(capi, "/api/v1/campaigns/spring-offer/pause", "acme-motors", "marketer")
    assert (status, paused["status"]) == (200, "paused")
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/pause", "acme-motors", "marketer"))[0] == 200  # again: same
    status, body = await _post(capi, "/api/v1/campaigns/spring-offer/launch", "acme-motors", "marketer")
    assert status == 409 and "resume" in body["error"]

    smtp.tempfail = []
    status, resumed = await _post(capi, "/api/v1/campaigns/spring-offer/resume", "acme-motors", "marketer")
    assert (status, resumed["status"]) == (202, "running")
    done = await _finished(capi, "acme-motors")
    assert (done["status"], done["outcomes"]) == ("finished", {"sent": 4})
    assert smtp.accepted == 4
    status, body = await _post(capi, "/api/v1/campaigns/spring-offer/cancel", "acme-motors", "marketer")
    assert status == 409 and "finished" in body["error"]


async def test_cancel_makes_what_is_left_final(capi: Api) -> None:
    capi.smtp.tempfail = ["liam@example.com", "emma@example.com"]  # type: ignore[attr-defined]
    await _create(capi)
    await _post(capi, "/api/v1/campaigns/spring-offer/launch", "acme-motors", "admin")
    assert (await _finished(capi, "acme-motors"))["outcomes"] == {"sent": 2, "pending": 2}
    status, cancelled = await _post(capi, "/api/v1/campaigns/spring-offer/cancel", "acme-motors", "manager")
    assert (status, cancelled["status"], cancelled["outcomes"]) == (200, "cancelled", {"sent": 2, "suppressed": 2})
    async with capi.session.get(capi.url("/api/v1/campaigns/spring-offer/deliveries"),
                                params={"format": "ndjson", "reason": "campaign_cancelled"},
                                headers=capi.auth("acme-motors", "admin")) as r:
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert sorted((line["external_id"], line["state"], line["decision"]) for line in lines) == [
        ("C2", "suppressed", "suppress"), ("C3", "suppressed", "suppress")]
    for action in ("launch", "resume", "pause"):
        assert (await _post(capi, f"/api/v1/campaigns/spring-offer/{action}", "acme-motors", "admin"))[0] == 409
    assert (await _post(capi, "/api/v1/campaigns/spring-offer/cancel", "acme-motors", "admin"))[0] == 200  # again: same
    assert capi.smtp.accepted == 2  # type: ignore[attr-defined]


def test_the_launch_backend_follows_redis() -> None:
    assert Settings.from_environ({}).launch_backend == "inline"
    assert Settings.from_environ({"CONSENTRY_REDIS_URL": "redis://127.0.0.1:6390/0"}).launch_backend == "arq"
    assert Settings.from_environ({"CONSENTRY_REDIS_URL": "redis://x", "CONSENTRY_LAUNCH_BACKEND": "inline"}).launch_backend == "inline"
    with pytest.raises(InputError) as raised:
        Settings.from_environ({"CONSENTRY_LAUNCH_BACKEND": "celery"})
    assert raised.value.field == "CONSENTRY_LAUNCH_BACKEND"


def test_every_campaign_route_is_described_and_every_reference_resolves() -> None:
    from engine.api import campaign_lifecycle, campaigns_api, deliveries_api

    modules = (campaign_lifecycle, campaigns_api, deliveries_api)
    components = {name for module in modules for name in getattr(module, "OPENAPI_COMPONENTS", {})}
    for module in modules:
        routes = {(route.path, route.method.lower()) for route in module.routes}  # type: ignore[attr-defined]
        described = {(path, method) for path, item in module.OPENAPI_PATHS.items() for method in item}
        assert routes == described, module.__name__
        refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps([module.OPENAPI_PATHS, getattr(module, "OPENAPI_COMPONENTS", {})]))
        assert set(refs) <= components, set(refs) - components


async def test_an_idempotency_key_replays_the_first_answer(capi: Api) -> None:
    headers = {**capi.auth("acme-motors", "marketer"), "Idempotency-Key": "create-spring"}
    answers = []
    for _ in range(2):
        async with capi.session.post(capi.url("/api/v1/campaigns"), json=CAMPAIGN, headers=headers) as response:
            answers.append((response.status, await response.json(), response.headers.get("Idempotent-Replayed")))
    # Without the key the repeat would be a 200 (the campaign exists); with it, the first 201.
    assert [a[0] for a in answers] == [201, 201] and answers[0][1] == answers[1][1] and answers[1][2] == "true"
    other = {**CAMPAIGN, "subject": "Another subject"}
    async with capi.session.post(capi.url("/api/v1/campaigns"), json=other, headers=headers) as response:
        assert response.status == 422
