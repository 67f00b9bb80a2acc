"""The official twilio client (through TwilioSms and directly) against the SMS capture server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from engine.capture import SmsCaptureServer, SmtpCaptureServer
from engine.capture.twilio_api import count_segments
from engine.clock import system_clock as now_us
from engine.transports import (
    PermanentError,
    SmtpPool,
    TransientError,
    TransportConnectionError,
    TransportTimeoutError,
    TwilioSms,
)
from tests.transports.conftest import Webhooks
from tests.transports.email_samples import make_message

ACCOUNT = "AC" + "0" * 32
TOKEN = "capture-test-token"  # the sms_capture fixture signs with it
SENDER = "+15550001000"


@pytest_asyncio.fixture
async def twilio(sms_server: SmsCaptureServer) -> AsyncIterator[TwilioSms]:
    transport = TwilioSms(sms_server.url, ACCOUNT, "any-token-works", concurrency=4)
    yield transport
    await transport.close()


async def test_send_creates_a_message(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    sid, segments = await twilio.send("+15550002001", SENDER, "Your car is ready. Reply STOP to opt out.")
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert segments == 1
    [message] = await sms_server.wait_for(1)
    assert message["sid"] == sid
    assert (message["to"], message["from"], message["channel"]) == ("+15550002001", SENDER, "sms")
    assert message["body"] == "Your car is ready. Reply STOP to opt out."
    line = json.loads(sms_server.store.path.read_text(encoding="utf-8").splitlines()[-1])
    assert line["sid"] == sid and line["received_at"].endswith("Z")
    datetime.fromisoformat(line["received_at"].replace("Z", "+00:00"))


async def test_the_official_client_sees_twilio_shapes(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    client = twilio.client
    created = await client.messages.create_async(to="+15550002002", from_=SENDER, body="ê" * 71)
    assert created.status == "queued"
    assert created.num_segments == "2"  # UCS-2: 67 per part
    assert created.direction == "outbound-api"
    assert created.account_sid == ACCOUNT
    assert abs(created.date_created - datetime.now(UTC)) < timedelta(minutes=1)
    fetched = await client.messages(created.sid).fetch_async()
    assert (fetched.sid, fetched.body, fetched.status) == (created.sid, "ê" * 71, "delivered")
    with pytest.raises(TwilioRestException) as missing:
        await client.messages("SM" + "f" * 32).fetch_async()
    assert (missing.value.status, missing.value.code) == (404, 20404)


async def test_list_filters_and_pages(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    for n in range(5):
        await twilio.send("+15550002003", SENDER, f"page {n}")
    await twilio.send("+15550002004", SENDER, "someone else")
    client = twilio.client
    listed = await client.messages.list_async(to="+15550002003", from_=SENDER, page_size=2)
    assert [m.body for m in listed] == [f"page {n}" for n in reversed(range(5))]  # newest first, 3 pages
    assert [m.body for m in await client.messages.list_async(to="+15550002003", limit=2)] == ["page 4", "page 3"]
    now = datetime.now(UTC)
    assert len(await client.messages.list_async(to="+15550002003", date_sent_after=now - timedelta(minutes=5))) == 5
    assert await client.messages.list_async(to="+15550002003", date_sent_after=now + timedelta(minutes=5)) == []
    assert await client.messages.list_async(to="+15550002003", date_sent_before=now - timedelta(days=2)) == []
    assert len(await client.messages.list_async(to="+15550002003", date_sent=now.date())) == 5


async def test_find_sent_reconciles_an_in_doubt_send(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    since = now_us()
    sid, _ = await twilio.send("+15550002005", SENDER, "Hello from Acme")
    assert await twilio.find_sent("+15550002005", SENDER, "Hello from Acme", since) == sid
    assert await twilio.find_sent("+15550002005", SENDER, "another text", since) is None
    assert await twilio.find_sent("+15550002006", SENDER, "Hello from Acme", since) is None
    later = since + 60 * 1_000_000  # a message created before the attempt began is not ours
    assert await twilio.find_sent("+15550002005", SENDER, "Hello from Acme", later) is None



async def test_a_send_guard_never_outlives_its_send(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    """A runner's claim guard covers its own request only. Once that runner has lost its
    claims, a reconciling read (or another runner's send) on the same client still goes out:
    a read refused by a stale guard once made the pipeline resend an in-doubt text blindly."""
    since = now_us()
    holding = [True]
    sid, _ = await twilio.send("+15550002015", SENDER, "Guarded hello", guard=lambda: holding[0])
    holding[0] = False
    assert await twilio.find_sent("+15550002015", SENDER, "Guarded hello", since) == sid
    other, _ = await twilio.send("+15550002016", SENDER, "Another runner", guard=lambda: True)
    assert [m["to"] for m in sms_server.messages][-2:] == ["+15550002015", "+15550002016"]
    assert other != sid

async def test_find_sent_after_a_capture_server_restart(tmp_path: Path) -> None:
    since = now_us()
    async with SmsCaptureServer(port=0, store_dir=tmp_path) as server:
        transport = TwilioSms(server.url, ACCOUNT, "t")
        sid, _ = await transport.send("+15550002007", SENDER, "kept")
        await transport.close()
    async with SmsCaptureServer(port=0, store_dir=tmp_path) as server:
        transport = TwilioSms(server.url, ACCOUNT, "t")
        assert await transport.find_sent("+15550002007", SENDER, "kept", since) == sid
        await transport.close()


@pytest.mark.parametrize(("option", "number", "code", "cause"), [
    ("unsubscribed", "+15550003001", 21610, "carrier_unsubscribed"),
    ("invalid", "+15550003002", 21211, "invalid_number"),
    ("not_mobile", "+15550003003", 21614, "not_mobile"),
])
async def test_refusals_map_to_permanent_errors_with_block_causes(
    sms_server: SmsCaptureServer, twilio: TwilioSms, option: str, number: str, code: int, cause: str,
) -> None:
    getattr(sms_server, option).add(number)
    with pytest.raises(PermanentError) as failure:
        await twilio.send(number, SENDER, "hi")
    error = failure.value
    assert (error.code, error.status, error.block_cause) == (code, 400, cause)
    assert not isinstance(error, TransientError)
    assert sms_server.accepted == 0


async def test_a_number_that_is_not_e164_is_invalid(twilio: TwilioSms) -> None:
    with pytest.raises(PermanentError) as failure:
        await twilio.send("555-0100", SENDER, "hi")
    assert failure.value.block_cause == "invalid_number"


async def test_other_client_errors_are_permanent_without_a_block(twilio: TwilioSms) -> None:
    with pytest.raises(PermanentError) as failure:
        await twilio.send("+15550003004", SENDER, "x" * 1601)
    assert (failure.value.code, failure.value.block_cause) == (21617, None)


async def test_the_official_client_raises_rest_exceptions(sms_server: SmsCaptureServer, twilio: TwilioSms) -> None:
    sms_server.unsubscribed.add("+15550003005")
    with pytest.raises(TwilioRestException) as failure:
        await twilio.client.messages.create_async(to="+15550003005", from_=SENDER, body="hi")
    assert (failure.value.code, failure.value.status) == (21610, 400)


@pytest.mark.parametrize("status", [503, 429, 500])
async def test_every_nth_call_fails_transiently(sms_server: SmsCaptureServer, twilio: TwilioSms, status: int) -> None:
    sms_server.fail_every_n, sms_server.fail_status = 2, status
    await twilio.send("+15550004001", SENDER, "one")
    with pytest.raises(TransientError) as failure:
        await twilio.send("+15550004001", SENDER, "two")
    await twilio.send("+15550004001", SENDER, "two")
    assert failure.value.status == status
    assert [m["body"] for m in sms_server.messages] == ["one", "two"]


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = TwilioSms(f"http://127.0.0.1:{port}", ACCOUNT, "t")
    try:
        with pytest.raises(TransportConnectionError) as failure:
            await transport.send("+15550004002", SENDER, "hi")
        with pytest.raises(TransientError):
            await transport.find_sent("+15550004002", SENDER, "hi", now_us())
    finally:
        await transport.close()
    assert isinstance(failure.value, ConnectionError)


async def test_latency_and_timeouts(sms_server: SmsCaptureServer) -> None:
    sms_server.latency_ms = 1000
    transport = TwilioSms(sms_server.url, ACCOUNT, "t", timeout=0.25)
    try:
        with pytest.raises(TransportTimeoutError) as failure:
            await transport.send("+15550004003", SENDER, "slow")
        # The request reached the server, which accepted it: exactly the in-doubt case.
        assert [m["body"] for m in await sms_server.wait_for(1)] == ["slow"]
        sms_server.latency_ms = 150
        transport.timeout = 5
        loop = asyncio.get_running_loop()
        started = loop.time()
        await transport.send("+15550004003", SENDER, "slow but fine")
        assert loop.time() - started >= 0.15
    finally:
        await transport.close()
    assert isinstance(failure.value, TimeoutError)


async def test_status_callbacks_are_signed_like_twilio(sms_server: SmsCaptureServer, twilio: TwilioSms,
                                                       webhooks: Webhooks) -> None:
    callback = webhooks.url("/twilio/status?tenant=acme")
    sid, _ = await twilio.send("+15550005001", SENDER, "tracked", status_callback=callback)
    requests = await webhooks.wait_for(2)
    assert [r.form["MessageStatus"] for r in requests] == ["sent", "delivered"]
    validator = RequestValidator(TOKEN)
    for request in requests:
        assert request.url == callback
        assert request.form["MessageSid"] == sid
        assert (request.form["To"], request.form["From"], request.form["AccountSid"]) == (
            "+15550005001", SENDER, ACCOUNT)
        assert validator.validate(request.url, request.form, request.signature)
        assert not RequestValidator("another-token").validate(request.url, request.form, request.signature)
    assert [c["status"] for c in await sms_server.wait_for_callbacks(2)] == ["sent", "delivered"]
    assert sms_server.status_of(sid) == "delivered"


async def test_inbound_stop_and_start(sms_server: SmsCaptureServer, twilio: TwilioSms, webhooks: Webhooks) -> None:
    handset, inbound_url = "+15550006001", webhooks.url("/twilio/inbound")
    webhooks.replies["/twilio/inbound"] = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>You are unsubscribed.</Message></Response>')
    async with aiohttp.ClientSession() as http:
        async with http.post(sms_server.url + "/_capture/inbound",
                             data={"From": handset, "To": SENDER, "Body": "STOP", "Url": inbound_url}) as response:
            assert response.status == 200
            result = await response.json()
    [request] = await webhooks.wait_for(1)
    assert (request.form["From"], request.form["To"], request.form["Body"]) == (handset, SENDER, "STOP")
    assert request.form["SmsStatus"] == "received"
    assert RequestValidator(TOKEN).validate(request.url, request.form, request.signature)
    assert result["http_status"] == 200 and len(result["replies"]) == 1
    [reply] = sms_server.messages  # the TwiML <Message>, texted back to the handset
    assert (reply["to"], reply["from"], reply["body"], reply["direction"]) == (
        handset, SENDER, "You are unsubscribed.", "outbound-reply")

    with pytest.raises(PermanentError) as failure:  # Advanced Opt-Out, as Twilio does it
        await twilio.send(handset, SENDER, "one more offer")
    assert failure.value.block_cause == "carrier_unsubscribed"
    await twilio.send(handset, "+15550001999", "another sender is not blocked")

    webhooks.replies.clear()
    await sms_server.simulate_inbound(handset, SENDER, "start", inbound_url)
    await twilio.send(handset, SENDER, "welcome back")


async def test_inbound_needs_all_fields(sms_server: SmsCaptureServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(sms_server.url + "/_capture/inbound", json={"From": "+15550006002"}) as response:
            assert response.status == 400
            assert "To" in (await response.json())["error"]


async def test_html_view_and_json_list_both_channels(tmp_path: Path) -> None:
    async with SmtpCaptureServer(port=0, store_dir=tmp_path) as smtp, SmsCaptureServer(port=0, store_dir=tmp_path) as sms:
        pool = SmtpPool(smtp.url)
        await pool.send_raw("service@acme.example", ["jane@example.com"],
                            make_message(subject="Spring <offer> & more"))
        await pool.close()
        await smtp.wait_for(1)
        transport = TwilioSms(sms.url, ACCOUNT, "t")
        await transport.send("+15550007001", SENDER, "<script>alert(1)</script>")
        await transport.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(sms.url + "/") as response:
                assert response.status == 200
                page = await response.text()
            async with http.get(sms.url + "/_capture/messages.json") as response:
                listed = (await response.json())["messages"]
            async with http.get(sms.url + "/_capture/messages.json?channel=sms") as response:
                only_sms = (await response.json())["messages"]
    assert "Spring &lt;offer&gt; &amp; more" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "jane@example.com" in page and "+15550007001" in page
    assert [m["channel"] for m in listed] == ["email", "sms"]
    assert [m["to"] for m in only_sms] == ["+15550007001"]


@pytest.mark.parametrize(("body", "segments"), [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),  # the extension table costs two septets
    ("é" * 160, 1),  # é is in the GSM basic table
    ("ê" * 70, 1), ("ê" * 71, 2), ("ê" * 134, 2), ("ê" * 135, 3),
    ("😀" * 35, 1), ("😀" * 36, 2),  # outside the BMP: two UTF-16 units each
])
def test_segment_count(body: str, segments: int) -> None:
    assert count_segments(body) == segments
