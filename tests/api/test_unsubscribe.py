"""One-click unsubscribe (RFC 8058) and the preference centre, against the running service."""

from __future__ import annotations

import re

from sqlalchemy import select

from engine.db.models import ConsentWording
from engine.render import sign_token
from tests.api.conftest import PUBLIC_URL, Api

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _revokes(events: list[dict]) -> list[dict]:
    return [e for e in events if e["action"] == "revoke"]


async def test_get_shows_the_confirmation_page_and_records_nothing(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.get(api.url(f"/u/{token}")) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
    assert "Unsubscribe from Acme Motors" in page
    assert "a***@example.com" in page  # masked: a forwarded link does not reveal the address
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert f"{PUBLIC_URL}/p/{token}" in page
    assert await api.events() == []


async def test_one_click_post_revokes_email_at_the_address_once(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    # Exactly what a mailbox provider sends: form-encoded, no cookie, no credentials.
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
        assert response.status == 200
        assert "You are unsubscribed" in await response.text()
    [event] = await api.events()
    assert event["external_id"] == "C1"
    assert event["tenant_id"] == api.tenants["acme-motors"].id
    assert (event["action"], event["channel"], event["class_code"], event["party"]) == ("revoke", "email", "*", "*")
    assert event["address"] == "ava@example.com"
    assert (event["method"], event["actor"], event["cause"]) == ("email_link", "recipient", None)

    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
        assert response.status == 200
    assert len(await api.events()) == 1


async def test_concurrent_one_click_posts_record_one_revoke(api: Api) -> None:
    import asyncio

    token = await api.token("acme-motors", "C2")

    async def post() -> int:
        async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
            return response.status

    assert await asyncio.wait_for(asyncio.gather(*(post() for _ in range(5))), 30) == [200] * 5
    assert len(await api.events()) == 1


async def test_one_click_after_a_new_grant_revokes_again(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK):
        pass
    async with api.session.post(api.url(f"/p/{token}"), data={"channels": "marketing"}) as response:
        assert response.status == 200
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK):
        pass
    # The save was also a review of the person's preferences (rule 10).
    assert [e["action"] for e in await api.events()] == ["revoke", "grant", "review", "revoke"]


def _tamper(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def test_bad_tokens_are_404_and_record_nothing(api: Api) -> None:
    good = await api.token("acme-motors", "C1")
    bravo_contact = await api.contact_id("bravo-cars", "B1")
    bad = [
        _tamper(good),
        good[:-2],
        sign_token(b"another-secret", api.tenants["acme-motors"].id, None, await api.contact_id("acme-motors", "C1"), "email"),
        # Properly signed, but Bravo's contact under Acme's tenant id: no such recipient.
        sign_token(api.settings.secret.encode(), api.tenants["acme-motors"].id, None, bravo_contact, "email"),
        sign_token(api.settings.secret.encode(), 999_999, None, bravo_contact, "email"),
        "not-a-token",
    ]
    for token in bad:
        for method, path in (("GET", "u"), ("POST", "u"), ("GET", "p"), ("POST", "p")):
            async with api.session.request(method, api.url(f"/{path}/{token}"), data=ONE_CLICK) as response:
                assert response.status == 404, (method, path, token)
                assert "Link not recognised" in await response.text()
    assert await api.events() == []


async def test_post_without_the_one_click_field_is_refused(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.post(api.url(f"/u/{token}"), data={"something": "else"}) as response:
        assert response.status == 400
    assert await api.events() == []


async def test_unsubscribed_email_is_suppressed_for_bulk_but_individual_replies_still_go(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK):
        pass
    headers = api.auth("acme-motors", "sales")
    query = "channel=email&class=marketing"
    async with api.session.get(api.url(f"/api/v1/contacts/C1/explain?{query}"), headers=headers) as response:
        assert response.status == 200, await response.text()
        bulk = await response.json()
    assert (bulk["decision"]["decision"], bulk["decision"]["reason"]) == ("suppress", "consent_revoked")
    async with api.session.get(api.url(f"/api/v1/contacts/C1/explain?{query}&kind=individual"), headers=headers) as response:
        assert (await response.json())["decision"]["decision"] == "send"
    # SMS was not unsubscribed.
    async with api.session.get(api.url("/api/v1/contacts/C1/explain?channel=sms&class=marketing&kind=individual"), headers=headers) as response:
        assert (await response.json())["decision"]["reason"] != "do_not_contact"


def _boxes(page: str) -> dict[str, bool]:
    return {
        match.group(1): match.group(2) is not None
        for match in re.finditer(r'name="channels" value="([^"]+)"( checked)?', page)
    }


async def test_preference_centre_shows_and_saves_each_class(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.get(api.url(f"/p/{token}")) as response:
        assert response.status == 200
        page = await response.text()
    # Exempt classes are no choice; opt_out classes start ticked, opt_in ones unticked.
    assert _boxes(page) == {"marketing": True, "service": True, "survey": False}
    assert 'aria-label="Marketing – email"' in page and "Messages from partners of Acme Motors" in page

    async with api.session.post(api.url(f"/p/{token}"), data=[("channels", "service"), ("channels", "survey")]) as response:
        assert response.status == 200
        page = await response.text()
    assert "Your preferences have been saved" in page
    assert _boxes(page) == {"marketing": False, "service": True, "survey": True}
    events = await api.events()
    assert [(e["action"], e["channel"], e["class_code"], e["party"], e["address"], e["method"]) for e in events] == [
        ("revoke", "email", "marketing", "*", "ava@example.com", "preference_centre"),
        ("grant", "email", "survey", "first", "ava@example.com", "preference_centre"),
        ("review", None, None, None, None, "preference_centre"),
    ]
    # Saving the same choices again changes no choice; it is one more review.
    async with api.session.post(api.url(f"/p/{token}"), data=[("channels", "service"), ("channels", "survey")]):
        pass
    assert [e["action"] for e in await api.events()] == ["revoke", "grant", "review", "review"]
    async with api.session.get(api.url(f"/p/{token}")) as response:
        assert _boxes(await response.text()) == {"marketing": False, "service": True, "survey": True}


async def test_preference_centre_after_one_click_shows_everything_unticked(api: Api) -> None:
    token = await api.token("acme-motors", "C4")
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK):
        pass
    async with api.session.get(api.url(f"/p/{token}")) as response:
        assert _boxes(await response.text()) == {"marketing": False, "service": False, "survey": False}


def _grid(page: str) -> dict[str, bool]:
    """party:channel:class -> ticked, for every box of the preference centre."""
    boxes = {}
    for match in re.finditer(r'<input type="checkbox" name="[^"]+" value="[^"]+"( checked)? id="([^"]+)"', page):
        boxes[match.group(2)] = match.group(1) is not None
    return boxes


async def _failing(api: Api, query: str) -> set[str]:
    """The rules explain says fail for C1 and this message."""
    url = api.url(f"/api/v1/contacts/C1/explain?{query}")
    async with api.session.get(url, headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 200, await response.text()
        rules = (await response.json())["rules"]
    return {rule["code"] for rule in rules if rule["verdict"] == "fail"}


async def test_preference_centre_offers_every_channel_class_and_party(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.get(api.url(f"/p/{token}")) as response:
        grid = _grid(await response.text())
    channels = ("email", "sms", "voice", "letter", "social")
    # Acme: marketing and service opt_out (ticked until revoked), survey opt_in (unticked
    # until granted), transactional exempt (no choice), from Acme and from its partners.
    assert grid == {
        f"{party}:{channel}:{class_code}": class_code != "survey"
        for party in ("first", "third") for channel in channels for class_code in ("marketing", "service", "survey")
    }


async def test_unticking_third_party_sms_marketing_suppresses_exactly_that(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    async with api.session.get(api.url(f"/p/{token}")) as response:
        grid = _grid(await response.text())
    ticked = [key for key, on in grid.items() if on and key != "third:sms:marketing"]
    form = [("shown", key) for key in grid] + [("choices", key) for key in ticked]
    async with api.session.post(api.url(f"/p/{token}"), data=form) as response:
        assert response.status == 200
        after = _grid(await response.text())
    assert after == {**grid, "third:sms:marketing": False}

    events = await api.events()
    assert [(e["action"], e["channel"], e["class_code"], e["party"], e["address"]) for e in events] == [
        ("revoke", "sms", "marketing", "third", None),  # SMS is not the link's channel: for the person
        ("review", None, None, None, None),
    ]
    assert {(e["wording_id"], e["method"]) for e in events} == {("preference-centre", "preference_centre")}
    async with api.engine.connect() as conn:
        wordings = (await conn.execute(select(ConsentWording.__table__))).all()
    assert [(w.wording_id, w.version) for w in wordings] == [("preference-centre", events[0]["wording_version"])]
    assert "Messages from partners of Acme Motors about their own products" in wordings[0].text
    assert "Marketing – text messages" in wordings[0].text

    # Gating reads the same: third-party SMS marketing is revoked, nothing else changed.
    # (Acme texts only leads who said YES: rule 4 fails on SMS whatever the page says.)
    assert await _failing(api, "channel=sms&class=marketing&party=third") == {"awaiting_sms_opt_in", "consent_revoked"}
    assert await _failing(api, "channel=sms&class=marketing&party=first") == {"awaiting_sms_opt_in"}
    assert await _failing(api, "channel=sms&class=service&party=third") == {"awaiting_sms_opt_in"}
    assert await _failing(api, "channel=email&class=marketing&party=third") == set()


async def test_a_grant_cites_the_wording_shown_and_the_same_words_keep_one_version(api: Api) -> None:
    token = await api.token("acme-motors", "C1")
    form = [("shown", "first:email:survey"), ("choices", "first:email:survey")]
    async with api.session.post(api.url(f"/p/{token}"), data=form):
        pass
    async with api.session.post(api.url(f"/p/{token}"), data=form):
        pass
    grants = [e for e in await api.events() if e["action"] == "grant"]
    assert [(e["channel"], e["class_code"], e["party"], e["address"]) for e in grants] == [
        ("email", "survey", "first", "ava@example.com")
    ]
    async with api.engine.connect() as conn:
        versions = (await conn.execute(select(ConsentWording.__table__.c.version))).scalars().all()
    assert versions == [grants[0]["wording_version"]]
    assert await _failing(api, "channel=email&class=survey") == set()
