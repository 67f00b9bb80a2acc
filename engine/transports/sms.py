"""SMS transport: the official twilio client's async path, pointed at a base URL.

`twilio.rest.Client` with our `LeanTwilioHttpClient` (engine/transports/twilio_http.py: the
library's documented `http_client` extension point, one keep-alive aiohttp session created
inside the running loop on first use; the same requests as the stock `AsyncTwilioHttpClient`
for less CPU), and `client.api.base_url` set to the configured base URL:
the client builds every Messages URL from that attribute (`Domain.absolute_url`), so
`https://api.twilio.com` in production and `http://127.0.0.1:8025` (the capture server)
locally use the same code, unforked and unpatched.

A text is created through the client's own request path (`Client.request_async`: its
headers, credentials and HTTP client), with the request `messages.create_async` makes: the
same URL (built by the Messages resource's own `Version` and `Domain`, once), the same form
fields in the same order, the same Content-Type and Accept headers. Its answer is read as the
resource reads it (`Version.exception` for a status outside 2xx, JSON otherwise), for the two
fields a send keeps: the SID and the segments. What is left out is the resource's wrapping,
a tenth of a text's CPU in our event loop (py-spy, 40,000 texts to the capture server): four
layers of keyword arguments, and a `MessageInstance` of 25 attributes, three of them dates
parsed from RFC 2822, made for every text and thrown away.

How failures become errors (engine/transports/errors.py):

| Twilio says | raised |
|---|---|
| 21610 (recipient replied STOP) | `PermanentError(block_cause="carrier_unsubscribed")` |
| 21211 (not a valid phone number) | `PermanentError(block_cause="invalid_number")` |
| 21614 (not a mobile number) | `PermanentError(block_cause="not_mobile")` |
| 20003 / HTTP 401 (credentials) | `TransportAuthError` |
| 21606, 21212 (our From number) | `SenderRejected` |
| HTTP 429 or 5xx | `TransientError` |
| any other 4xx | `PermanentError(block_cause=None)` |
| connection refused / reset | `TransportConnectionError` |
| no answer within `timeout` | `TransportTimeoutError` (in doubt: reconcile with `find_sent`) |
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.base.version import Version
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageList

from engine.transports.base import SmsTransport
from engine.transports.errors import (
    DispatchCancelled,
    PermanentError,
    SenderRejected,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportError,
    TransportTimeoutError,
)
from engine.transports.guarded import GuardedConnector
from engine.transports.twilio_http import NO_TIMEOUT, LeanTwilioHttpClient

DEFAULT_TIMEOUT_S = 30.0
# Twilio dates have whole seconds, and two clocks are involved: a message created up to
# this long before `since_us` still counts as the one we sent.
RECONCILE_SKEW_S = 5.0
# Newest messages from one sender to one handset looked at when reconciling: far more than
# the pair exchanges within an in-doubt window.
RECONCILE_LIMIT = 50

_BLOCK_CAUSES = {21610: "carrier_unsubscribed", 21211: "invalid_number", 21614: "not_mobile"}
_SENDER_CODES = {21212, 21606, 21659}  # invalid From, From not SMS-capable / not ours
_AUTH_CODES = {20003}
# The headers `MessageList.create_async` sends with a new Message.
_CREATE_HEADERS = (("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"))


# The guard of the request this task is making, asked again by every write to the socket
# (engine/transports/guarded.py). A context variable, not an attribute of the shared client:
# concurrent sends of several runners (and reconciling reads) each see their own, never the
# last one set — a stale guard of a runner that lost its claims once made a reconciling
# read fail, and the retry then sent without reconciling.
_GUARD: ContextVar[Callable[[], bool] | None] = ContextVar("consentry_sms_guard", default=None)


class _Client(Client):
    """The official client, its request headers built once per kind of request.

    `ClientBase.get_headers` formats the User-Agent from `platform.system()`, `machine()`
    and `python_version()` on every request (1 % of a send's event loop); the same headers
    come from a copy of the first ones made for the same method, the same headers passed
    in (the resource's Content-Type and Accept) and the same `user_agent_extensions`.
    """

    _made_headers: dict[tuple[object, ...], dict[str, str]]

    def get_headers(self, method: str, headers: dict[str, str] | None) -> dict[str, str]:
        try:
            made = self._made_headers
        except AttributeError:
            made = self._made_headers = {}
        key = (method, tuple(headers.items()) if headers else (), tuple(self.user_agent_extensions))
        first = made.get(key)
        if first is None:
            if len(made) >= 64:  # a bound, should callers ever vary their headers
                made.clear()
            first = made[key] = super().get_headers(method, dict(headers) if headers else None)
        return dict(first)  # a fresh dict: the caller adds to it (Authorization)


class TwilioSms(SmsTransport):
    """Texts through Twilio's Messages API at `base_url`, at most `concurrency` at once."""

    def __init__(self, base_url: str, account_sid: str, auth_token: str, concurrency: int = 16,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if concurrency < 1:
            raise ValueError("TwilioSms concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.concurrency = concurrency
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._http: LeanTwilioHttpClient | None = None
        self._client: Client | None = None
        self._messages: MessageList | None = None
        self._create_url: str | None = None

    @property
    def client(self) -> Client:
        """The official client (created on first use, inside the running event loop)."""
        if self._client is None:
            # aiohttp binds its session to the loop it is created in: never at import time.
            asyncio.get_running_loop()
            self._http = LeanTwilioHttpClient(
                aiohttp.ClientSession(connector=GuardedConnector(_GUARD.get), timeout=NO_TIMEOUT))
            client = _Client(
                self.account_sid, self.auth_token, http_client=self._http,
                # An explicit environment, so TWILIO_EDGE / TWILIO_REGION cannot rewrite the
                # host of a configured base URL behind our back.
                environment={"TWILIO_ACCOUNT_SID": self.account_sid},
            )
            client.api.base_url = self.base_url
            self._client = client
        return self._client

    @property
    def messages(self) -> MessageList:
        """The account's Messages list of `client`, looked up once: `client.messages` walks
        three properties per call (its URL is still built per request from `base_url`)."""
        if self._messages is None:
            self._messages = self.client.messages
        return self._messages

    @property
    def create_url(self) -> str:
        """The URL `messages.create_async` posts to, built by the resource's own `Version`
        (its API version) and `Domain` (`base_url`), as every request of the resource is."""
        if self._create_url is None:
            messages = self.messages
            self._create_url = messages._version.domain.absolute_url(
                messages._version.relative_uri(messages._uri))
        return self._create_url

    async def _create(self, to: str, from_: str, body: str, status_callback: str | None) -> dict[str, object]:
        """`messages.create_async(to=, from_=, body=, status_callback=)`'s request; its answer
        as the payload the resource would wrap (see the module doc), {} when unreadable."""
        # The fields in the resource's order; the client drops a None (no status callback).
        data = {"To": to, "StatusCallback": status_callback, "From": from_, "Body": body}
        url = self.create_url
        response = await self.client.request_async("POST", url, data=data, headers=dict(_CREATE_HEADERS))
        if not 200 <= response.status_code < 300:
            raise Version.exception("POST", url, response, "Unable to create record")
        try:
            payload = json.loads(response.text) if response.text else {}
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}

    async def send(self, to: str, from_: str, body: str, status_callback: str | None = None,
                   guard: Callable[[], bool] | None = None) -> tuple[str, int | None]:
        """Create the Message; returns (its SID, the segments Twilio bills).

        `guard`, when given, is asked once a connection slot is ours, right before the
        request goes: False raises DispatchCancelled and nothing is sent. Waiting for a slot
        can take long; a runner frozen meanwhile may have lost its claim.
        """
        async with self._slots:
            if guard is not None and not guard():
                raise DispatchCancelled("the runner lost its claim before the request; nothing was sent")
            request_guard = _GUARD.set(guard)
            try:
                async with asyncio.timeout(self.timeout):
                    message = await self._create(to, from_, body, status_callback or None)
            except DispatchCancelled:
                raise
            except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise classify(exc) from exc
            finally:
                _GUARD.reset(request_guard)
        sid, segments = message.get("sid"), message.get("num_segments")
        if not isinstance(sid, str) or not sid:
            # Accepted (2xx), so the Message may exist: in doubt, as a late answer is, and
            # settled the same way (find_sent), never failed or sent again blindly.
            raise TransportTimeoutError("Twilio accepted the text but its answer names no Message SID")
        # Twilio sends the count as a string ("2"); anything else leaves it unrecorded.
        return sid, int(segments) if isinstance(segments, (str, int)) and str(segments).isdecimal() else None

    async def find_sent(self, to: str, from_: str, body: str, since_us: int) -> str | None:
        """The SID of a message to `to` from `from_` with exactly `body`, created at or after
        `since_us` (less `RECONCILE_SKEW_S`), or None.

        Filters on To/From only and compares creation dates here: a message still queued
        at Twilio has no `date_sent`, so a `DateSent` filter would miss exactly the messages
        an interrupted bulk send leaves behind.
        """
        since = datetime.fromtimestamp(since_us / 1_000_000, UTC) - timedelta(seconds=RECONCILE_SKEW_S)
        async with self._slots:
            # A read sends nothing: no claim guards it (and none of a send may leak into it).
            request_guard = _GUARD.set(None)
            try:
                async with asyncio.timeout(self.timeout):
                    messages = await self.messages.list_async(
                        to=to, from_=from_, limit=RECONCILE_LIMIT)
            except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise classify(exc) from exc
            finally:
                _GUARD.reset(request_guard)
        for message in messages:
            created = message.date_created
            if message.body == body and isinstance(created, datetime) and created >= since:
                return message.sid
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
            self._messages = None
            self._create_url = None


def classify(exc: BaseException) -> TransportError:
    """The transport error for a twilio / aiohttp failure."""
    if isinstance(exc, TwilioRestException):
        status = exc.status
        code = exc.code if isinstance(exc.code, int) else status
        message = str(exc.msg)
        if status == 429 or status >= 500:
            return TransientError(message, code, status=status)
        if code in _BLOCK_CAUSES:
            return PermanentError(message, code, _BLOCK_CAUSES[code], status=status)
        if code in _AUTH_CODES or status in (401, 403):
            return TransportAuthError(message, code, status=status)
        if code in _SENDER_CODES:
            return SenderRejected(message, code, status=status)
        return PermanentError(message, code, status=status)
    if isinstance(exc, TwilioException):
        # Raised by list pages ("Unable to fetch page"), with the HTTP response.
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        message = str(exc.args[0]) if exc.args else "Twilio error"
        if status is None or status == 429 or status >= 500:
            return TransientError(message, status, status=status)
        if status in (401, 403):
            return TransportAuthError(message, status, status=status)
        return PermanentError(message, status, status=status)
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return TransportTimeoutError("no answer from the Twilio API in time")
    return TransportConnectionError(str(exc) or type(exc).__name__)
