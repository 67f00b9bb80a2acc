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

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from engine.transports import TwilioSms
from engine.transports.errors import TransportConnectionError, TransportTimeoutError
from engine.transports.sms import classify
from engine.transports.twilio_http import LeanTwilioHttpClient, form_urlencode, quote_plus

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

HANG_UP = "+15550009100"
COOKIE_TO = "+15550009200"
# Accepted (201), with an answer that names no Message: an HTML error page of a proxy, an
# object without a SID.
UNREADABLE = {"+15550009301": "<html>upstream hiccup</html>", "+15550009302": '{"status": "queued"}'}
# Segment counts other than Twilio's digit string, by recipient, and what a send records.
ODD_SEGMENTS = {"+15550009401": ("\u00b2", None), "+15550009402": ("", None), "+15550009403": (None, None),
                "+15550009404": ("two", None), "+15550009405": (3, 3), "+15550009406": ("-1", None)}


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
        if to == HANG_UP:  # the connection drops before any answer
            assert request.transport is not None
            request.transport.abort()
            raise web.HTTPInternalServerError
        if to in UNREADABLE:
            return web.Response(text=UNREADABLE[to], status=201, content_type="application/json")
        if to in REFUSALS:
            status, code = REFUSALS[to]
            return web.json_response({"code": code, "message": f"refused ({code})", "status": status,
                                      "more_info": "https://www.twilio.com/docs/errors"}, status=status)
        response = web.json_response({
            "sid": "SM" + "a" * 32, "account_sid": ACCOUNT, "to": to, "from": form["From"][0],
            "body": form["Body"][0], "status": "queued", "num_segments": ODD_SEGMENTS.get(to, ("2",))[0], "direction": "outbound-api",
            "date_created": "Mon, 30 Nov 2026 15:00:00 +0000", "date_updated": "Mon, 30 Nov 2026 15:00:00 +0000",
            "date_sent": None, "error_code": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SM.json",
        }, status=201)
        if to == COOKIE_TO:  # a cookie set by the API is sent back with the next requests
            response.set_cookie("edge", "abc123", path="/")
        return response


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
    # Every header (Host, User-Agent, X-Twilio-Client, Accept-Charset, Content-Type, Accept,
    # Accept-Encoding, Authorization, Content-Length...), and for a text in the same order;
    # a read puts Authorization before aiohttp's Accept-Encoding (equivalent in HTTP).
    if lean.method == "POST":
        assert list(lean.headers.items()) == list(stock.headers.items())
    else:
        assert sorted(lean.headers.items()) == sorted(stock.headers.items())


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


async def test_a_text_without_a_status_callback_is_the_same_request(fake_twilio: FakeTwilio) -> None:
    client, http = stock_client(fake_twilio.url)
    stock = await client.messages.create_async(to="+15550002002", from_=SENDER, body=BODY)
    await http.close()
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        sent = await transport.send("+15550002002", SENDER, BODY)
    finally:
        await transport.close()
    same_request(*fake_twilio.requests)
    assert urllib.parse.parse_qs(fake_twilio.requests[1].body.decode()).keys() == {"To", "From", "Body"}
    assert sent == (stock.sid, 2)


@pytest.mark.parametrize("to", sorted(UNREADABLE))
async def test_an_accepted_text_without_a_sid_is_in_doubt(fake_twilio: FakeTwilio, to: str) -> None:
    """Twilio took the request (201) but its answer names no Message: the text may exist, so
    the send is in doubt (reconciled before any resend, as after a late answer), not failed."""
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        with pytest.raises(TransportTimeoutError, match="names no Message SID"):
            await transport.send(to, SENDER, BODY)
    finally:
        await transport.close()
    assert len(fake_twilio.requests) == 1


@pytest.mark.parametrize("to", sorted(ODD_SEGMENTS))
async def test_an_odd_segment_count_is_left_unrecorded_and_the_text_is_sent(fake_twilio: FakeTwilio, to: str) -> None:
    """The count is for the bill; a text Twilio accepted with a SID is sent whatever it says."""
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        assert await transport.send(to, SENDER, BODY) == ("SM" + "a" * 32, ODD_SEGMENTS[to][1])
    finally:
        await transport.close()


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


async def failing_both_ways(fake_twilio: FakeTwilio, to: str,
                            stock_error: type[Exception]) -> tuple[Exception, Exception, Exception]:
    """A text to `to` through the stock client, then through ours: (the stock client's
    exception, its classification, our transport's exception)."""
    client, http = stock_client(fake_twilio.url)
    with pytest.raises(stock_error) as stock_failure:
        await client.messages.create_async(to=to, from_=SENDER, body=BODY)
    await http.close()
    expected = classify(stock_failure.value)
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        with pytest.raises(type(expected)) as failure:
            await transport.send(to, SENDER, BODY)
    finally:
        await transport.close()
    return stock_failure.value, expected, failure.value


@pytest.mark.parametrize("to", sorted(REFUSALS))
async def test_refusals_classify_as_with_the_stock_client(fake_twilio: FakeTwilio, to: str) -> None:
    _stock, expected, error = await failing_both_ways(fake_twilio, to, TwilioRestException)
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


async def test_a_text_takes_the_direct_path_and_the_rest_the_session(fake_twilio: FakeTwilio) -> None:
    """A text skips `ClientSession._request` (same request, above); a session with a feature
    the direct path leaves out sends everything through `session.request`, as before."""
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        transport.client  # noqa: B018 - made inside the running loop
        assert transport._http is not None and transport._http._direct is not None
        assert type(transport._http.session.cookie_jar) is aiohttp.CookieJar  # cookies kept, as stock
    finally:
        await transport.close()
    tracing = aiohttp.TraceConfig()
    for session in (aiohttp.ClientSession(trace_configs=[tracing]), aiohttp.ClientSession(headers={"X-A": "1"}),
                    aiohttp.ClientSession(raise_for_status=True)):
        async with session:
            assert LeanTwilioHttpClient(session)._direct is None


async def test_an_aiohttp_release_the_direct_path_was_not_tested_with_takes_the_session() -> None:
    # The direct path mirrors aiohttp's private `_request`: an upgrade must fall back to it.
    from engine.transports.twilio_http import _direct_settings

    async with aiohttp.ClientSession() as session:
        assert _direct_settings(session) is not None
        assert _direct_settings(session, version="3.15.0") is None
        assert _direct_settings(session, version="4.0.0a1") is None


async def test_cookies_the_api_sets_are_sent_back_as_the_stock_client_does(fake_twilio: FakeTwilio) -> None:
    # By name: aiohttp's cookie jar keeps no cookie of a bare IP address.
    url = fake_twilio.url.replace("127.0.0.1", "localhost")
    client, http = stock_client(url)
    for to in (COOKIE_TO, "+15550002004"):
        await client.messages.create_async(to=to, from_=SENDER, body=BODY)
    await http.close()
    transport = TwilioSms(url, ACCOUNT, TOKEN)
    try:
        for to in (COOKIE_TO, "+15550002004"):
            await transport.send(to, SENDER, BODY)
    finally:
        await transport.close()
    stock_first, stock_second, lean_first, lean_second = fake_twilio.requests
    same_request(stock_first, lean_first)
    same_request(stock_second, lean_second)
    assert lean_second.headers["Cookie"] == "edge=abc123"


async def test_a_dropped_connection_classifies_as_with_the_stock_client(fake_twilio: FakeTwilio) -> None:
    stock, expected, error = await failing_both_ways(fake_twilio, HANG_UP, aiohttp.ClientError)
    assert type(error) is type(expected) is TransportConnectionError
    assert str(error) == str(expected)
    assert type(error.__cause__) is type(stock)
    same_request(*fake_twilio.requests)


async def test_headers_are_the_library_s_with_user_agent_extensions(fake_twilio: FakeTwilio) -> None:
    """The headers made once per method (`_Client.get_headers`) are the library's own, and
    follow a change of `user_agent_extensions`."""
    stock, http = stock_client(fake_twilio.url)
    await http.close()
    transport = TwilioSms(fake_twilio.url, ACCOUNT, TOKEN)
    try:
        client = transport.client
        for extensions in ([], ["consentry/1"], ["consentry/1", "x/2"]):
            client.user_agent_extensions = stock.user_agent_extensions = list(extensions)
            for method in ("POST", "GET", "DELETE"):
                # As the resources call it (create: Content-Type and Accept), and without headers.
                for passed in (None, {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                               {"Content-Type": "x"}, {"Accept": "application/xml"}):
                    expected = stock.get_headers(method, None if passed is None else dict(passed))
                    made = client.get_headers(method, None if passed is None else dict(passed))
                    assert list(made.items()) == list(expected.items())
                    made["Authorization"] = "changed"  # a copy each time
                    assert client.get_headers(method, None if passed is None else dict(passed)) == expected
    finally:
        await transport.close()
