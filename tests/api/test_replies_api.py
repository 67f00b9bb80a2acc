"""Individual replies over the API: gated as individual, answered with decision and reason,
sent once per Idempotency-Key, only by the roles that talk to customers, only to the key's
own tenant's contacts."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, inbound_sms

PATH = "/api/v1/contacts/{}/replies"
ACME_NUMBER = "+12135550000"  # the number Acme texts from
EMAIL = {"channel": "email", "subject": "Your test drive", "body": "See you Saturday at 10, Ava."}


def _sent_to(api: Api, address: str) -> list[dict]:
    assert api.sink is not None
    return [m for m in api.sink.smtp.messages + api.sink.sms.messages
            if address in (m["to"] if isinstance(m["to"], list) else [m["to"]])]


@pytest.mark.parametrize(("role", "status"), [("sales", 201), ("manager", 201), ("admin", 201), ("marketer", 403)])
async def test_who_may_send_a_reply(api: Api, role: str, status: int) -> None:
    before = len(_sent_to(api, "ava@example.com"))
    async with api.session.post(api.url(PATH.format("C1")), json=EMAIL, headers=api.auth("acme-motors", role)) as response:
        assert response.status == status, await response.text()
        body = await response.json()
    if status == 201:
        assert (body["decision"], body["reason"], body["address"]) == ("send", None, "ava@example.com")
        assert api.sink is not None
        api.sink.call(api.sink.smtp.wait_for(before + 1, timeout=10))
    assert len(_sent_to(api, "ava@example.com")) == before + (status == 201)
    async with api.session.post(api.url(PATH.format("C1")), json=EMAIL) as response:
        assert response.status == 401


async def test_a_reply_held_back_answers_with_the_reason_and_sends_nothing(api: Api) -> None:
    # Acme texts only leads who said YES: the opt-in wait binds individual texts too...
    text = {"channel": "sms", "body": "Hi Ava, the SUV is in."}
    async with api.session.post(api.url(PATH.format("C1")), json=text, headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 200
        assert (await response.json())["reason"] == "awaiting_sms_opt_in"
    # ...and after a STOP in her own words, so does the block.
    async with api.twilio_post("/webhooks/twilio/acme-motors/inbound",
                               inbound_sms(ACME_NUMBER, "+12135550101", "YES")):
        pass
    async with api.session.post(api.url(PATH.format("C1")), json=text, headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 201, await response.text()
    async with api.twilio_post("/webhooks/twilio/acme-motors/inbound",
                               inbound_sms(ACME_NUMBER, "+12135550101", "please stop texting me")):
        pass
    async with api.session.post(api.url(PATH.format("C1")), json=text, headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 200
        body = await response.json()
    assert (body["decision"], body["reason"], body["provider_id"]) == ("suppress", "do_not_contact", None)


async def test_one_idempotency_key_sends_once(api: Api) -> None:
    headers = {**api.auth("acme-motors", "sales"), "Idempotency-Key": "reply-42"}
    before = len(_sent_to(api, "liam@example.com"))
    answers = []
    for _ in range(2):
        async with api.session.post(api.url(PATH.format("C2")), json=EMAIL, headers=headers) as response:
            answers.append((response.status, await response.json(), response.headers.get("Idempotent-Replayed")))
    assert [status for status, _body, _replayed in answers] == [201, 201]
    assert answers[0][1] == answers[1][1] and answers[1][2] == "true"
    assert api.sink is not None
    api.sink.call(api.sink.smtp.wait_for(before + 1, timeout=10))
    assert len(_sent_to(api, "liam@example.com")) == before + 1
    other = {**EMAIL, "body": "Something else"}
    async with api.session.post(api.url(PATH.format("C2")), json=other, headers=headers) as response:
        assert response.status == 422


async def test_bad_bodies_name_their_field_and_other_tenants_contacts_are_404(api: Api) -> None:
    headers = api.auth("acme-motors", "sales")
    for body, field in (({"channel": "fax", "body": "x"}, "channel"), ({"channel": "sms"}, "body"),
                        ({"channel": "email", "body": "x"}, "subject"), ({**EMAIL, "colour": "red"}, "colour")):
        async with api.session.post(api.url(PATH.format("C1")), json=body, headers=headers) as response:
            assert response.status == 422, (body, await response.text())
            assert [error["field"] for error in (await response.json())["errors"]] == [field]
    # B1 is Bravo's: not even its existence shows through Acme's key.
    async with api.session.post(api.url(PATH.format("B1")), json=EMAIL, headers=headers) as response:
        assert response.status == 404
