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

A text (a POST with no query, no redirects followed, no timeout of the client's own: what
`messages.create_async` asks for) also skips `ClientSession._request`, a fifth of a send's
event loop, most of it for features this session never has (trace configs, middlewares,
proxies, netrc, cookies, redirects, retries of idempotent requests, a timeout handle for a
request without timeout): `_post` makes the same `ClientRequest` and sends it over the
session's connector as `_request` does (`_connect_and_send_request`), with the same errors.
It is taken only while the session has none of those features (`_direct_settings`: checked
once, then only the cookie jar per text); anything else goes through `session.request`.
"""

from __future__ import annotations

import codecs
import functools
import logging
import re
import warnings
from urllib.parse import urlencode

import aiohttp
from aiohttp import ClientRequest, ClientResponse
from aiohttp.client_exceptions import ClientOSError
from aiohttp.helpers import TimerNoop
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


# The ASCII characters quote_plus changes (all but the unreserved ones): found by one regex
# scan in C, each replaced from _QUOTE_PLUS (the space later, by str.replace).
_ASCII_TO_QUOTE = re.compile(r"[^A-Za-z0-9_.~ -]")


def _quoted(match: re.Match[str]) -> str:
    return _QUOTE_PLUS[ord(match.group())]


def quote_plus(value: str) -> str:
    """`urllib.parse.quote_plus(value)` (safe=""), without urllib's Python loop per byte.

    An ASCII text (most texts: a few commas and "?" among letters) is scanned once by a
    regex for what must change; any other is one `str.translate` over its UTF-8 bytes (each
    seen as the latin-1 character of the same number). A third and two thirds of urllib's
    CPU for a text's Body."""
    if value.isascii():
        return _ASCII_TO_QUOTE.sub(_quoted, value).replace(" ", "+")
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


@functools.lru_cache(maxsize=64)
def _direct_url(url: URL) -> bool:
    # What `_request` checks or strips per request, for a URL `_post` may take as it is:
    # an absolute http(s) URL with a host, no credentials in it, no fragment.
    return (url.scheme in ("http", "https") and bool(url.raw_host) and url.user is None
            and url.password is None and not url.raw_fragment)


@functools.lru_cache(maxsize=16)
def _encoding(content_type: str) -> str | None:
    """What `ClientResponse.get_encoding` returns for this Content-Type when it does not
    need the body (a known charset, or JSON's UTF-8), else None (ask the response)."""
    mimetype = aiohttp.helpers.parse_mimetype(content_type.lower())
    charset = mimetype.parameters.get("charset")
    if charset:
        try:
            return codecs.lookup(charset).name
        except (LookupError, ValueError):
            pass
    if mimetype.type == "application" and mimetype.subtype in ("json", "rdap"):
        return "utf-8"
    return None


# The aiohttp releases `_post` was written against and tested with (it mirrors
# `ClientSession._request`, which is not a public API). Under any other release every
# request takes `session.request`: an upgrade can make a text dearer, never wrong.
DIRECT_PATH_AIOHTTP = ("3.14.",)


def _direct_settings(session: aiohttp.ClientSession, version: str = aiohttp.__version__) -> dict[str, object] | None:
    """The session's settings `_post` sends with, or None when `_post` would not make the
    request `session.request` makes (another aiohttp release, a feature `_post` leaves out is
    in use, or this aiohttp names its settings otherwise: then every request takes
    `session.request`)."""
    if not version.startswith(DIRECT_PATH_AIOHTTP):
        return None
    try:
        if (session._trace_configs or session._middlewares or session._default_headers
                or session._skip_auto_headers or session._default_auth is not None
                or session._base_url is not None or session._default_proxy is not None
                or session._trust_env or session._raise_for_status
                or session._request_class is not ClientRequest):
            return None
        connector = session._connector
        return {
            "connector": connector, "loop": session._loop, "version": session._version,
            "response_class": session._response_class, "cookie_jar": session._cookie_jar,
            "response_params": {
                "skip_payload": False, "read_until_eof": True,
                "auto_decompress": session._auto_decompress, "read_timeout": None,
                "read_bufsize": session._read_bufsize,
                "timeout_ceil_threshold": connector._timeout_ceil_threshold,  # type: ignore[union-attr]
                "max_line_size": session._max_line_size, "max_field_size": session._max_field_size,
                "max_headers": session._max_headers,
            },
        }
    except AttributeError:
        return None


@functools.lru_cache(maxsize=8)
def _basic_auth(login: str, password: str) -> str:
    # What aiohttp's BasicAuth(login, password).encode() sends (latin-1, its default).
    return aiohttp.encode_basic_auth(login, password, encoding="latin1")


class _Credentials(aiohttp.BasicAuth):
    """The stock client's `aiohttp.BasicAuth(login, password)`, its header encoded once."""

    __slots__ = ()

    def encode(self) -> str:
        return _basic_auth(self.login, self.password)


@functools.lru_cache(maxsize=8)
def _credentials(login: str, password: str) -> _Credentials:
    # Made once per account: BasicAuth warns that it is deprecated (aiohttp 3.14) when made.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _Credentials(login, password)


class LeanTwilioHttpClient(AsyncHttpClient):
    """An `AsyncHttpClient` over one shared aiohttp `session` (keep-alive; the caller owns
    its connector, e.g. engine/transports/guarded.py's GuardedConnector)."""

    def __init__(self, session: aiohttp.ClientSession, logger: logging.Logger = _logger) -> None:
        super().__init__(logger, True, None)
        self.session = session
        self._direct = _direct_settings(session)

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
        method = method.upper()
        # The twilio client builds a fresh headers dict per call (ClientBase.get_headers).
        headers = {} if headers is None else headers
        body = None
        if data is not None:
            # Bytes go through aiohttp as they are; a dict would be urlencoded by FormData.
            body = form_urlencode(data).encode("ascii")
            headers.setdefault("Content-Type", _FORM)
        target = _url(url)
        direct = (self._direct is not None and method == "POST" and body is not None and not params
                  and timeout is None and not allow_redirects and _direct_url(target))
        if auth is not None and not direct:
            headers["Authorization"] = _basic_auth(auth[0], auth[1])
        if self.logger.isEnabledFor(logging.INFO):
            self.log_request({"method": method, "url": url, "params": params, "headers": headers})
        if direct:
            assert body is not None
            response = await self._post(target, headers, body, None if auth is None else _credentials(*auth))
        else:
            response = await self.session.request(
                method, target, params=params, data=body, headers=headers,  # type: ignore[arg-type] # twilio's query values: str, int
                timeout=NO_TIMEOUT if timeout is None else aiohttp.ClientTimeout(total=timeout),
                allow_redirects=allow_redirects,
            )
        raw = await response.read()
        encoding = _encoding(response.headers.get("Content-Type", "")) or response.get_encoding()
        text = raw.decode(encoding)
        if self.logger.isEnabledFor(logging.INFO):
            self.log_response(response.status, response)  # type: ignore[arg-type]
        return Response(response.status, text, response.headers)

    async def _post(self, url: URL, headers: dict[str, str], body: bytes,
                    auth: aiohttp.BasicAuth | None) -> ClientResponse:
        """`session.request("POST", url, headers=headers, data=body, auth=auth,
        allow_redirects=False, timeout=NO_TIMEOUT)` for a session `_direct_settings`
        accepted: the same `ClientRequest` (so the same headers in the same order as the
        stock client's: Authorization after aiohttp's own), sent over the same connector,
        as `ClientSession._request` sends it."""
        session = self.session
        if session.closed:
            raise RuntimeError("Session is closed")
        direct = self._direct
        assert direct is not None
        timer = TimerNoop()  # what a request without a total timeout is given
        jar = direct["cookie_jar"]
        request = ClientRequest(
            "POST", url, headers=headers, data=body, auth=auth, version=direct["version"],  # type: ignore[arg-type]
            cookies=jar.filter_cookies(url) if len(jar) else None,  # type: ignore[arg-type, attr-defined]
            loop=direct["loop"], response_class=direct["response_class"],  # type: ignore[arg-type]
            timer=timer, session=session, ssl=True, traces=[],
        )
        response: ClientResponse | None = None
        try:
            try:
                connection = await direct["connector"].connect(request, traces=[], timeout=NO_TIMEOUT)  # type: ignore[attr-defined]
                protocol = connection.protocol
                assert protocol is not None
                protocol.set_response_params(timer=timer, **direct["response_params"])  # type: ignore[arg-type]
                try:
                    response = await request.send(connection)
                    try:
                        await response.start(connection)
                    except BaseException:
                        response.close()
                        raise
                except BaseException:
                    connection.close()
                    raise
            except aiohttp.ClientError:
                raise
            except OSError as exc:  # as `_request` turns them (a timeout stays what it is)
                if exc.errno is None and isinstance(exc, TimeoutError):
                    raise
                raise ClientOSError(*exc.args) from exc
            if response._raw_cookie_headers:  # kept as the session keeps them (then sent)
                jar.update_cookies_from_headers(  # type: ignore[attr-defined]
                    response._raw_cookie_headers, response.url)
            if request._body is not None:
                await request._body.close()
            return response
        except BaseException:
            if response is not None:
                response.close()
            if request._body is not None:
                await request._body.close()
            raise

    async def close(self) -> None:
        await self.session.close()

