"""/api/v1/webhooks: admin keys only, the tenant from the key, located input errors."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.webhooks.conftest import register

HOOK = "https://dms.acme.example/consentry"


async def test_only_admin_keys_manage_endpoints(api: Api) -> None:
    created = await register(api, HOOK, ["consent.revoke"])
    routes = [
        ("POST", "/api/v1/webhooks", {"url": HOOK, "event_types": ["consent.block"]}),
        ("GET", "/api/v1/webhooks", None),
        ("GET", f"/api/v1/webhooks/{created['id']}", None),
        ("GET", f"/api/v1/webhooks/{created['id']}/deliveries", None),
        ("DELETE", f"/api/v1/webhooks/{created['id']}", None),
    ]
    for method, path, body in routes:
        for role in ("manager", "marketer", "sales"):
            async with api.session.request(method, api.url(path), json=body, headers=api.auth("acme-motors", role)) as r:
                assert r.status == 403, (method, path, role)
                assert "manage webhooks" in (await r.json())["error"]
        async with api.session.request(method, api.url(path), json=body) as r:
            assert r.status == 401, (method, path)
        async with api.session.request(method, api.url(path), json=body,
                                       headers={"Authorization": "Bearer csk_not-a-key"}) as r:
            assert r.status == 401
    # Nothing above changed anything: still the one endpoint.
    async with api.session.get(api.url("/api/v1/webhooks"), headers=api.auth("acme-motors", "admin")) as r:
        assert [hook["id"] for hook in (await r.json())["webhooks"]] == [created["id"]]


async def test_the_secret_is_shown_once_and_the_endpoint_listed_without_it(api: Api) -> None:
    created = await register(api, HOOK, ["consent.revoke", "campaign.finished", "consent.revoke"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["event_types"] == ["campaign.finished", "consent.revoke"]
    other = await register(api, HOOK, ["consent.block"])
    assert other["secret"] != created["secret"]
    admin = api.auth("acme-motors", "admin")
    async with api.session.get(api.url("/api/v1/webhooks"), headers=admin) as r:
        listed = (await r.json())["webhooks"]
    assert [hook["id"] for hook in listed] == [created["id"], other["id"]]
    assert all("secret" not in hook for hook in listed)
    async with api.session.get(api.url(f"/api/v1/webhooks/{created['id']}"), headers=admin) as r:
        shown = await r.json()
    assert shown == {key: value for key, value in created.items() if key != "secret"}


async def test_another_tenants_endpoint_is_not_found(api: Api) -> None:
    acme = await register(api, HOOK, ["consent.revoke"])
    bravo = api.auth("bravo-cars", "admin")
    for method, path in (
        ("GET", f"/api/v1/webhooks/{acme['id']}"),
        ("GET", f"/api/v1/webhooks/{acme['id']}/deliveries"),
        ("DELETE", f"/api/v1/webhooks/{acme['id']}"),
        ("GET", "/api/v1/webhooks/999999"),
        ("GET", "/api/v1/webhooks/not-a-number"),
    ):
        async with api.session.request(method, api.url(path), headers=bravo) as r:
            assert r.status == 404, (method, path)
    async with api.session.get(api.url("/api/v1/webhooks"), headers=bravo) as r:
        assert (await r.json())["webhooks"] == []
    # Still there for its own tenant.
    async with api.session.get(api.url(f"/api/v1/webhooks/{acme['id']}"), headers=api.auth("acme-motors", "admin")) as r:
        assert r.status == 200


async def test_bad_registrations_name_every_field(api: Api) -> None:
    admin = api.auth("acme-motors", "admin")
    cases = [
        ({"url": "http://dms.acme.example/hook", "event_types": ["consent.revoke"]}, {"url"}),
        ({"url": "https://user:pw@dms.acme.example/hook", "event_types": ["consent.revoke"]}, {"url"}),
        ({"url": "ftp://dms.acme.example/hook", "event_types": ["consent.revoke"]}, {"url"}),
        # The cloud metadata service: never a receiver (the dispatcher would fetch credentials).
        ({"url": "https://169.254.169.254/latest/meta-data/", "event_types": ["consent.revoke"]}, {"url"}),
        ({"url": "https://[fe80::1]/hook", "event_types": ["consent.revoke"]}, {"url"}),
        ({"url": HOOK, "event_types": ["consent.revoke", "consent.teleport"]}, {"event_types[1]"}),
        ({"url": HOOK, "event_types": []}, {"event_types"}),
        ({"event_types": "consent.revoke"}, {"url", "event_types"}),
        ({"url": HOOK, "event_types": ["consent.revoke"], "secret": "mine"}, {"secret"}),
    ]
    for body, fields in cases:
        async with api.session.post(api.url("/api/v1/webhooks"), json=body, headers=admin) as r:
            assert r.status == 422, body
            assert {error["field"] for error in (await r.json())["errors"]} == fields, body
    # Plain http is fine to a receiver on this machine.
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"):
        await register(api, url, ["consent.revoke"])
    async with api.session.get(api.url("/api/v1/webhooks"), headers=admin) as r:
        assert len((await r.json())["webhooks"]) == 3


async def test_deleting_an_endpoint_removes_it_from_the_listing(api: Api) -> None:
    created = await register(api, HOOK, ["consent.revoke"])
    admin = api.auth("acme-motors", "admin")
    async with api.session.delete(api.url(f"/api/v1/webhooks/{created['id']}"), headers=admin) as r:
        assert r.status == 204
    async with api.session.get(api.url("/api/v1/webhooks"), headers=admin) as r:
        assert (await r.json())["webhooks"] == []
    async with api.session.delete(api.url(f"/api/v1/webhooks/{created['id']}"), headers=admin) as r:
        assert r.status == 404


async def test_one_idempotency_key_registers_one_endpoint(api: Api) -> None:
    headers = {**api.auth("acme-motors", "admin"), "Idempotency-Key": "hook-1"}
    body = {"url": "https://crm.acme.example/hooks", "event_types": ["consent.revoke"]}
    answers = []
    for _ in range(2):
        async with api.session.post(api.url("/api/v1/webhooks"), json=body, headers=headers) as response:
            answers.append((response.status, await response.json(), response.headers.get("Idempotent-Replayed")))
    assert [a[0] for a in answers] == [201, 201] and answers[0][1] == answers[1][1] and answers[1][2] == "true"
    async with api.session.get(api.url("/api/v1/webhooks"), headers=api.auth("acme-motors", "admin")) as response:
        assert len((await response.json())["webhooks"]) == 1
