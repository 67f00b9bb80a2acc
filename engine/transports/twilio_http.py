"""The HTTP client under the official twilio client: lean per request, same bytes on the wire.

twilio.rest.Client takes any `twilio.http.AsyncHttpClient` as `http_client` (the library's
documented extension point); its resources (`client.messages.create_async` ...) call
`request(method, url, params, data, headers, auth, timeout, allow_redirects)` and parse the
`twilio.http.response.Response` we return. The stock `AsyncTwilioHttpClient` spends more
CPU per text than the rest of a send (profiled, 100,000 texts to the capture server):

- it hands `data` to aiohttp as a dict, so every request first fails a lookup through
  aiohttp's whole payload registry, then builds a `FormData` (and a `MultipartWriter` it
  never uses) to urlencode four fields;
- it passes `auth` as an `aiohttp.BasicAuth`, both deprecated in aiohttp 3.14: two
  DeprecationWarnings raised (and filtered) per request, and the header base64-encoded
  again each time;
- it formats its request / response log lines even when INFO logging is off, and keeps a
  copy of every request and response for the library's own tests.

`LeanTwilioHttpClient` sends the same request: the same form, byte for byte what aiohttp's
FormData makes of a dict (`urlencode(data, doseq=True)`, UTF-8; see `form_urlencode`), under the same
Content-Type the twilio client asks for; the same Basic credentials, encoded once; the same
query parameters, redirect policy and timeout. Only the work around it goes.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlencode

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from yarl import URL

_logger = logging.getLogger("twilio.async_http_client")  # the stock client's logger name
_FORM = "application/x-www-form-urlencoded"
# No timeout at all, as the stock client gets by passing `timeout=None` to aiohttp (the
# session's 5-minute default would arm a timer per request): TwilioSms bounds every call
# with its own `asyncio.timeout`, which is what classifies a late answer.
NO_TIMEOUT = aiohttp.ClientTimeout()


# quote_plus, one byte at a time: the unreserved characters stay, a space becomes "+", any
# other byte of the UTF-8 encoding becomes %XX (upper-case hex), as urllib.parse does it.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_QUOTE_PLUS = [chr(byte) if byte in _UNRESERVED else "+" if byte == 0x20 else f"%{byte:02X}" for byte in range(256)]


def quote_plus(value: str) -> str:
    """`urllib.parse.quote_plus(value)` (safe=""), in one `str.translate` over its UTF-8 bytes
    (each seen as the latin-1 character of the same number) instead of urllib's Python loop
    per byte: a quarter of the CPU for a text's Body."""
    return value.encode("utf-8").decode("latin-1").translate(_QUOTE_PLUS)


@functools.lru_cache(maxsize=64)
def _quoted_name(name: str) -> str:
    return quote_plus(name)  # the form's field names: To, From, Body, StatusCallback


def form_urlencode(data: dict[str, object]) -> str:
    """`urllib.parse.urlencode(data, doseq=True)`, the body aiohttp's FormData sends for a
    dict; fields with any value but a string (lists, numbers) take urllib's own path."""
    try:
        return "&".join([f"{_quoted_name(name)}={quote_plus(value)}" for name, value in data.items()])  # type: ignore[arg-type]
    except (AttributeError, TypeError):  # a value that is not a str (an int, a list...)
        return urlencode(data, doseq=True)


@functools.lru_cache(maxsize=64)
def _url(url: str) -> URL:
    # The Messages URL is the same for every text of an account: parse it once.
    return URL(url)


@functools.lru_cache(maxsize=8)
def _basic_auth(login: str, password: str) -> str:
    # What aiohttp's BasicAuth(login, password).encode() sends (latin-1, its default).
    return aiohttp.encode_basic_auth(login, password, encoding="latin1")


class LeanTwilioHttpClient(AsyncHttpClient):
    """An `AsyncHttpClient` over one shared aiohttp `session` (keep-alive; the caller owns
    its connector, e.g. engine/transports/guarded.py's GuardedConnector)."""

    def __init__(self, session: aiohttp.ClientSession, logger: logging.Logger = _logger) -> None:
        super().__init__(logger, True, None)
        self.session = session

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """One request, as `AsyncTwilioHttpClient.request` makes it (see the module doc)."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        # The twilio client builds a fresh headers dict per call (ClientBase.get_headers).
        headers = {} if headers is None else headers
        if auth is not None:
            headers["Authorization"] = _basic_auth(auth[0], auth[1])
        body = None
        if data is not None:
            # Bytes go through aiohttp as they are; a dict would be urlencoded by FormData.
            body = form_urlencode(data).encode("ascii")
            headers.setdefault("Content-Type", _FORM)
        if self.logger.isEnabledFor(logging.INFO):
            self.log_request({"method": method.upper(), "url": url, "params": params, "headers": headers})
        response = await self.session.request(
            method.upper(), _url(url), params=params, data=body, headers=headers,  # type: ignore[arg-type] # twilio's query values: str, int
            timeout=NO_TIMEOUT if timeout is None else aiohttp.ClientTimeout(total=timeout),
            allow_redirects=allow_redirects,
        )
        text = await response.text()
        if self.logger.isEnabledFor(logging.INFO):
            self.log_response(response.status, response)  # type: ignore[arg-type]
        return Response(response.status, text, response.headers)

    async def close(self) -> None:
        await self.session.close()

