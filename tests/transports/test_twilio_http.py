"""TwilioSms's HTTP client (engine/transports/twilio_http.py) makes the requests the stock
`AsyncTwilioHttpClient` makes, byte for byte, and its failures classify the same.

A plain aiohttp server (not our capture server) records every request as it arrives and
answers as the Twilio API does; the official client sends through each HTTP client in turn.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from engine.transports import TwilioSms
from engine.transports.sms import classify
from engine.transports.twilio_http import form_urlencode, quote_plus

ACCOUNT = "AC" + "1" * 32
TOKEN = "an-auth-token"
SENDER = "+15550001000"
# Everything a form has to escape: spaces, & = + % # ?, a line break, accents, an emoji.
BODY = "Hi Zoë & Al: 50% off = +2 oil changes? #deal\nReply STOP to opt out 🚗"
CALLBACK = "https://hooks.example/twilio/status?tenant=acme&x=1"
# Twilio's answers by recipient: (HTTP status, error code or None).
REFUSALS = {
    "+15550009001": (400, 21610), "+15550009002": (400, 21211), "+15550009003": (401, 20003),
    "+15550009004": (400, 21606), "+15550009005": (429, 20429), "+15550009006": (500, None),
    "+15550009007": (400, 21617), "+15550009008": (503, None),
}


@dataclass
class Recorded:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeTwilio:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        if request.method == "GET":  # the Messages list: one empty page
            return web.json_response({"messages": [], "next_page_uri": None, "page": 0, "page_size": 50})
        form = urllib.parse.parse_qs(body.decode("ascii"))
        to = form["To"][0]
        if to in REFUSALS:
            status, code = REFUSALS[to]
            return web.json_response({"code": code, "message": f"refused ({code})", "status": status,
                                      "more_info": "https://www.twilio.com/docs/errors"}, status=status)
        return web.json_response({
            "sid": "SM" + "a" * 32, "account_sid": ACCOUNT, "to": to, "from": form["From"][0],
            "body": form["Body"][0], "status": "queued", "num_segments": "2", "direction": "outbound-api",
            "date_created": "Mon, 30 Nov 2026 15:00:00 +0000", "date_updated": "Mon, 30 Nov 2026 15:00:00 +0000",
            "date_sent": None, "error_code": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SM.json",
        }, status=201)


@pytest_asyncio.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def stock_client(url: str) -> tuple[Client, AsyncTwilioHttpClient]:
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT, TOKEN, http_client=http, environment={"TWILIO_ACCOUNT_SID": ACCOUNT})
    client.api.base_url = url
    return client, http


def same_request(stock: Recorded, lean: Recorded) -> None:
    assert (lean.method, lean.path_qs, lean.body) == (stock.method, stock.path_qs, stock.body)
    for name in ("Authorization", "Content-Type", "Content-Length", "Accept", "Accept-Charset",
                 "User-Agent", "X-Twilio-Client", "Host"):
        assert lean.headers.get(name) == stock.headers.get(name), name


async def test_a_text_is_the_same_request_byte_for_byte(fake_twilio: FakeTwilio) -> None:
    client, http = stock_client(fake_twilio.url)
    stock = await client.messages.create_async(to="+15550002001", from_=SENDER, body=BODY,
                                               status_callback=CALLBACK)
    await http.close()
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        sid, segments = await transport.send("+15550002001", SENDER, BODY, CALLBACK)
        lean = await transport.client.messages.create_async(to="+15550002001", from_=SENDER, body=BODY)
    finally:
        await transport.close()
    first, second, third = fake_twilio.requests
    same_request(first, second)
    assert dict(urllib.parse.parse_qsl(second.body.decode())) == {
        "To": "+15550002001", "From": SENDER, "Body": BODY, "StatusCallback": CALLBACK}
    assert third.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (sid, segments) == (stock.sid, 2)
    assert (lean.sid, lean.body, lean.date_created) == (stock.sid, BODY, stock.date_created)


async def test_a_reconciling_read_is_the_same_request(fake_twilio: FakeTwilio) -> None:
    client, http = stock_client(fake_twilio.url)
    assert await client.messages.list_async(to="+15550002002", from_=SENDER, limit=50) == []
    await http.close()
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        assert await transport.find_sent("+15550002002", SENDER, BODY, 0) is None
    finally:
        await transport.close()
    stock, lean = fake_twilio.requests
    same_request(stock, lean)
    assert lean.method == "GET" and "PageSize=50" in lean.path_qs


@pytest.mark.parametrize("to", sorted(REFUSALS))
async def test_refusals_classify_as_with_the_stock_client(fake_twilio: FakeTwilio, to: str) -> None:
    client, http = stock_client(fake_twilio.url)
    with pytest.raises(TwilioRestException) as stock_failure:
        await client.messages.create_async(to=to, from_=SENDER, body=BODY)
    await http.close()
    expected = classify(stock_failure.value)
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        with pytest.raises(type(expected)) as failure:
            await transport.send(to, SENDER, BODY)
    finally:
        await transport.close()
    error = failure.value
    assert type(error) is type(expected)
    assert (error.code, error.status, getattr(error, "block_cause", None), str(error)) == (
        expected.code, expected.status, getattr(expected, "block_cause", None), str(expected))
    same_request(*fake_twilio.requests)


async def test_request_logging_when_twilio_logs_at_info(fake_twilio: FakeTwilio,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Off by default (nothing formatted per text); at INFO the stock client's lines, still
    without the credentials."""
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        with caplog.at_level(logging.WARNING, logger="twilio.async_http_client"):
            await transport.send("+15550002003", SENDER, BODY)
        assert caplog.records == []
        with caplog.at_level(logging.INFO, logger="twilio.async_http_client"):
            await transport.send("+15550002003", SENDER, BODY)
    finally:
        await transport.close()
    logged = caplog.text
    assert f"POST Request: {fake_twilio.url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json" in logged
    assert "Response Status Code: 201" in logged
    assert "Authorization" not in logged and "Basic " not in logged


def test_the_form_is_what_urllib_makes() -> None:
    """quote_plus / form_urlencode replace urllib's for speed: the same output for every
    character, and urllib's own path for values that are not strings."""
    characters = [chr(code) for code in range(0x110000) if not 0xD800 <= code < 0xE000]
    for start in range(0, len(characters), 4096):
        text = "".join(characters[start:start + 4096])
        assert quote_plus(text) == urllib.parse.quote_plus(text), start
    for data in ({"To": "+1555", "Body": BODY, "StatusCallback": CALLBACK}, {},
                 {"MediaUrl": ["https://a.example/1.png", "https://a.example/2 x.png"], "Body": "hi"},
                 {"ValidityPeriod": 600, "Attempt": 2, "Body": "ok"}):
        assert form_urlencode(data) == urllib.parse.urlencode(data, doseq=True)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: refused, as urllib refuses it
        form_urlencode({"Body": "\ud800"})
