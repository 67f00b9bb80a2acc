"""Twilio webhooks: inbound keywords and status callbacks, signed exactly as Twilio signs."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree

import pytest
from sqlalchemy import insert, select
from twilio.request_validator import RequestValidator

from campaigns.definition import parse_campaign
from engine.clock import system_clock as now_us
from engine.db.models import Delivery
from engine.send.launch import launch
from tests.api.conftest import AUTH_TOKEN, PUBLIC_URL, Api, inbound_sms

INBOUND = "/webhooks/twilio/acme-motors/inbound"
STATUS = "/webhooks/twilio/acme-motors/status"
ACME_NUMBER = "+12135550000"
LIAM = "+12135550102"  # shared by C2 and C3
AVA = "+12135550101"  # Acme's C1, and Bravo's B1


def _reply(xml: str) -> list[str]:
    root = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    return [message.text or "" for message in root.iter("Message")]


@pytest.mark.parametrize("body", ["stop", " Stop ", "STOP.", "unsubscribe", "StopAll", "QUIT", "opt out"])
async def test_stop_keywords_block_sms_for_every_contact_with_the_number(api: Api, body: str) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, LIAM, body)) as response:
        assert response.status == 200
        assert response.content_type == "application/xml"
        [reply] = _reply(await response.text())
    assert reply == (
        "You have been unsubscribed and will receive no more messages from Acme Motors. Reply START to resubscribe."
    )
    events = await api.events()
    assert sorted(e["external_id"] for e in events) == ["C2", "C3"]
    for event in events:
        assert (event["action"], event["channel"], event["address"]) == ("block", "sms", LIAM)
        assert (event["class_code"], event["party"]) == (None, None)
        assert (event["method"], event["cause"], event["note"]) == ("sms_keyword", "sms_stop", body)


async def test_stop_is_recorded_for_the_tenant_of_the_url_only(api: Api) -> None:
    # Ava's number is also Bravo's B1: a STOP to Acme's number blocks Acme's contact only.
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, "(213) 555-0101", "STOP")) as response:
        assert response.status == 200
    [event] = await api.events()
    assert (event["external_id"], event["tenant_id"], event["address"]) == ("C1", api.tenants["acme-motors"].id, AVA)


@pytest.mark.parametrize("body", ["please stop texting me", "take me off your list", "Yes please stop"])
async def test_a_revocation_in_plain_words_blocks_like_stop_with_one_confirmation(api: Api, body: str) -> None:
    # Before plain-language revocation, "please stop texting me" recorded nothing.
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, LIAM, body)) as response:
        assert response.status == 200
        [reply] = _reply(await response.text())
    assert reply.endswith("Reply START to resubscribe.")
    events = await api.events()
    assert sorted(e["external_id"] for e in events) == ["C2", "C3"]
    assert {(e["action"], e["channel"], e["address"], e["cause"], e["note"]) for e in events} == {
        ("block", "sms", LIAM, "sms_stop", body)
    }


async def test_a_sentence_using_stop_as_a_visit_records_nothing(api: Api) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, LIAM, "I'll stop by Saturday")) as response:
        assert response.status == 200
        assert _reply(await response.text()) == []
    assert await api.events() == []


@pytest.mark.parametrize("body", ["HELP", "info", "Is the Civic still available?"])
async def test_help_and_other_messages_record_nothing(api: Api, body: str) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, body)) as response:
        assert response.status == 200
        replies = _reply(await response.text())
    assert replies == ([] if body.startswith("Is") else [replies[0]])
    if replies:
        assert "reply STOP" in replies[0] and "Acme Motors" in replies[0]
    assert await api.events() == []


async def test_yes_unblocks_and_grants_sms_and_ends_the_opt_in_wait(api: Api) -> None:
    sales = api.auth("acme-motors", "sales")
    explain = "/api/v1/contacts/C1/explain?channel=sms&class=marketing"
    async with api.session.get(api.url(explain), headers=sales) as response:
        assert (await response.json())["decision"]["reason"] == "awaiting_sms_opt_in"
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "STOP")):
        pass
    async with api.session.get(api.url(explain + "&kind=individual"), headers=sales) as response:
        assert (await response.json())["decision"]["reason"] == "do_not_contact"

    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "Yes")) as response:
        assert response.status == 200
        [reply] = _reply(await response.text())
    assert "Acme Motors" in reply
    events = await api.events()
    assert [(e["action"], e["channel"], e["class_code"], e["party"], e["address"], e["method"]) for e in events] == [
        ("block", "sms", None, None, AVA, "sms_keyword"),
        ("unblock", "sms", None, None, AVA, "sms_keyword"),
        ("grant", "sms", "*", "first", AVA, "sms_keyword"),
    ]
    async with api.session.get(api.url(explain), headers=sales) as response:
        assert (await response.json())["decision"]["decision"] == "send"


async def test_a_replayed_yes_never_undoes_a_later_stop(api: Api) -> None:
    """Webhooks are recorded once per MessageSid: replaying a captured, validly signed YES
    (or Twilio retrying it) after the customer's STOP records nothing, and the number stays
    blocked. The reply still goes out: Twilio may never have received the first one."""
    sales = api.auth("acme-motors", "sales")
    explain = "/api/v1/contacts/C1/explain?channel=sms&class=marketing&kind=individual"
    yes = inbound_sms(ACME_NUMBER, AVA, "YES")
    async with api.twilio_post(INBOUND, yes):
        pass
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "STOP")):
        pass
    for _ in range(2):
        async with api.twilio_post(INBOUND, yes) as response:
            assert response.status == 200
            [reply] = _reply(await response.text())
        assert "Acme Motors" in reply
    assert [e["action"] for e in await api.events()] == ["unblock", "grant", "block"]
    async with api.session.get(api.url(explain), headers=sales) as response:
        assert (await response.json())["decision"]["reason"] == "do_not_contact"


async def test_a_replayed_stop_is_recorded_once(api: Api) -> None:
    stop = inbound_sms(ACME_NUMBER, LIAM, "STOP")
    for _ in range(3):
        async with api.twilio_post(INBOUND, stop) as response:
            assert response.status == 200
    # Liam's number belongs to two contacts: one block each, recorded once.
    assert [e["action"] for e in await api.events()] == ["block", "block"]


async def test_start_unblocks_without_granting(api: Api) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "stop")):
        pass
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "START")) as response:
        [reply] = _reply(await response.text())
    assert reply.startswith("You have been resubscribed")
    assert [e["action"] for e in await api.events()] == ["block", "unblock"]


async def test_bad_signatures_are_403_and_record_nothing(api: Api) -> None:
    params = inbound_sms(ACME_NUMBER, LIAM, "STOP")
    attempts = [
        api.twilio_post(INBOUND, params, token="not-the-auth-token"),
        # Signed over the URL the request really went to, not the configured public URL.
        api.twilio_post(INBOUND, params, signed_url=api.url(INBOUND)),
        # Signed over other parameters than those sent (a replayed signature).
        api.session.post(
            api.url(INBOUND), data=params,
            headers={"X-Twilio-Signature": _signature({**params, "Body": "hello"})},
        ),
        api.session.post(api.url(INBOUND), data=params),
        api.session.post(api.url(STATUS), data={"MessageSid": "SMx", "MessageStatus": "undelivered", "ErrorCode": "21610"}),
    ]
    for attempt in attempts:
        async with attempt as response:
            assert response.status == 403
    assert await api.events() == []


def _signature(params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + INBOUND, params)


async def test_unknown_tenant_is_404(api: Api) -> None:
    path = "/webhooks/twilio/nobody/inbound"
    async with api.twilio_post(path, inbound_sms(ACME_NUMBER, LIAM, "STOP")) as response:
        assert response.status == 404
    assert await api.events() == []


async def _sms_delivery(api: Api, external_id: str, sid: str) -> int:
    tenant = api.tenants["acme-motors"]
    definition = parse_campaign({
        "campaign": "service-texts", "tenant": tenant.code, "kind": "bulk", "channel": "sms",
        "class": "service", "template": "service_reminder", "sender": {"phone": ACME_NUMBER},
    })  # fmt: skip
    contact_id = await api.contact_id(tenant.code, external_id)
    stamp = now_us()
    async with api.engine.begin() as conn:
        record = await launch(conn, definition, tenant, {}, stamp)
        return (
            await conn.execute(
                insert(Delivery).values(
                    tenant_id=tenant.id, campaign_id=record.id, contact_id=contact_id, channel="sms", kind="bulk",
                    purpose="campaign", address=AVA, decision="send", state="sent", provider_id=sid, attempts=1,
                    sent_at_us=stamp, created_at_us=stamp, updated_at_us=stamp,
                ).returning(Delivery.id)
            )
        ).scalar_one()


async def _delivery(api: Api, delivery_id: int) -> tuple[str, str | None]:
    table = Delivery.__table__
    async with api.engine.connect() as conn:
        row = (await conn.execute(select(table.c.state, table.c.error).where(table.c.id == delivery_id))).one()
    return row.state, row.error


def _status(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    params = {
        "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "From": ACME_NUMBER, "To": AVA,
        "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
    }  # fmt: skip
    if error_code:
        params["ErrorCode"] = error_code
    return params


async def test_status_21610_fails_the_delivery_and_blocks_the_number_once(api: Api) -> None:
    sid = "SM" + "a" * 32
    delivery_id = await _sms_delivery(api, "C1", sid)
    for _ in range(2):  # Twilio retries a callback it got no answer to
        async with api.twilio_post(STATUS, _status(sid, "undelivered", "21610")) as response:
            assert response.status == 204
    assert await _delivery(api, delivery_id) == ("failed", "twilio undelivered 21610")
    [event] = await api.events()
    assert (event["external_id"], event["action"], event["channel"], event["address"]) == ("C1", "block", "sms", AVA)
    assert (event["cause"], event["actor"]) == ("carrier_unsubscribed", "twilio")
    assert sid in event["note"]


async def test_other_status_callbacks(api: Api) -> None:
    sid = "SM" + "b" * 32
    delivery_id = await _sms_delivery(api, "C1", sid)
    async with api.twilio_post(STATUS, _status(sid, "delivered")) as response:
        assert response.status == 204
    assert await _delivery(api, delivery_id) == ("sent", None)
    async with api.twilio_post(STATUS, _status(sid, "failed", "30003")) as response:
        assert response.status == 204
    assert await _delivery(api, delivery_id) == ("failed", "twilio failed 30003")
    assert await api.events() == []
    # A sid of another tenant's (or no) delivery changes nothing.
    async with api.twilio_post("/webhooks/twilio/bravo-cars/status", _status(sid, "undelivered", "21610")) as response:
        assert response.status == 204
    assert await api.events() == []


async def test_recorded_events_are_counted_in_metrics(api: Api) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, LIAM, "STOP")):
        pass
    async with api.session.get(api.metrics_url) as response:
        assert response.status == 200
        text = await response.text()
    assert 'consentry_ledger_events_total{action="block",tenant="acme-motors"} 2.0' in text


async def test_concurrent_replays_record_once(api: Api) -> None:
    """Many copies of one status and of one STOP at once: the webhook writer puts several in
    one transaction (engine/api/webhook_writer.py), and still records each once."""
    sid = "SM" + "d" * 32
    delivery_id = await _sms_delivery(api, "C1", sid)
    stop = inbound_sms(ACME_NUMBER, LIAM, "STOP")

    async def post(path: str, params: dict[str, str]) -> int:
        async with api.twilio_post(path, params) as response:
            await response.read()
            return response.status

    answers = await asyncio.gather(
        *(post(STATUS, _status(sid, "undelivered", "21610")) for _ in range(20)),
        *(post(INBOUND, stop) for _ in range(20)),
    )
    assert answers == [204] * 20 + [200] * 20
    assert await _delivery(api, delivery_id) == ("failed", "twilio undelivered 21610")
    recorded = sorted((event["external_id"], event["action"], event["cause"]) for event in await api.events())
    assert recorded == [("C1", "block", "carrier_unsubscribed"), ("C2", "block", "sms_stop"), ("C3", "block", "sms_stop")]
