"""Real servers on loopback for the transport and capture-server tests.

- `smtp_server`: our SMTP capture server (session-wide, reset before each test);
- `sms_server`: our Twilio-compatible capture server (session-wide, reset before each test);
- `sink`: a plain aiosmtpd server, independent of our code, to prove `SmtpPool` speaks
  real SMTP (and STARTTLS and AUTH, with `tls_sink`);
- `webhooks`: an aiohttp app that records the status callbacks and inbound webhooks the
  SMS capture server posts to it;
- `postfix`: Debian's Postfix on loopback (tests/servers.py `PostfixServer`: STARTTLS with
  a private CA, SASL AUTH, a recipient access map), relaying to `relay_sink`, our capture
  server on a loop of its own (the CLI under test runs `asyncio.run` itself). Session-wide,
  the sink emptied before each test. Postfix that cannot start fails the test with its log
  tail; it is never skipped.

Every server binds port 0 and the tests read back the port it got. Waiting is on events
with timeouts, never on sleeps.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.capture import SmsCaptureServer, SmtpCaptureServer
from tests.capture import ThreadedCapture
from tests.servers import PostfixServer, ServerError

SINK_USER, SINK_PASSWORD = "mailer", "s3cret"


# --- our capture servers ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="session")
async def smtp_capture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SmtpCaptureServer]:
    async with SmtpCaptureServer("127.0.0.1", 0, tmp_path_factory.mktemp("smtp-capture")) as server:
        yield server


@pytest.fixture
def smtp_server(smtp_capture: SmtpCaptureServer) -> SmtpCaptureServer:
    smtp_capture.reset()
    return smtp_capture


@pytest_asyncio.fixture(scope="session")
async def sms_capture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SmsCaptureServer]:
    async with SmsCaptureServer("127.0.0.1", 0, tmp_path_factory.mktemp("sms-capture"),
                                auth_token="capture-test-token") as server:
        yield server


@pytest.fixture
def sms_server(sms_capture: SmsCaptureServer) -> SmsCaptureServer:
    sms_capture.reset()
    return sms_capture


# --- an independent SMTP server: aiosmtpd -----------------------------------------------


@dataclass
class Sink:
    """An aiosmtpd server and what it received."""

    port: int
    envelopes: list[Any] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)
    authenticated: list[bool] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.envelopes.clear()
        self.peers.clear()
        self.authenticated.clear()
        self.tls.clear()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        self.peers.append(session.peer)
        self.authenticated.append(bool(session.authenticated))
        self.tls.append(session.ssl is not None)
        self.arrived.set()
        return "250 2.0.0 Message accepted for delivery"

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.envelopes) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.envelopes


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SINK_USER.encode(), SINK_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


async def _start_sink(**options: Any) -> tuple[asyncio.Server, Sink]:
    sink = Sink(port=0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: AiosmtpdSMTP(sink, hostname="aiosmtpd-sink", **options), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    return server, sink


@pytest_asyncio.fixture(scope="session")
async def aiosmtpd_sink() -> AsyncIterator[Sink]:
    server, sink = await _start_sink(authenticator=_authenticate, auth_require_tls=False)
    yield sink
    server.close()


@pytest.fixture
def sink(aiosmtpd_sink: Sink) -> Sink:
    aiosmtpd_sink.reset()
    return aiosmtpd_sink


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, once per session)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest_asyncio.fixture(scope="session")
async def tls_sink_server(certificate: tuple[Path, Path]) -> AsyncIterator[Sink]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server, sink = await _start_sink(tls_context=context, require_starttls=True,
                                     authenticator=_authenticate)
    yield sink
    server.close()


@pytest.fixture
def tls_sink(tls_sink_server: Sink) -> Sink:
    tls_sink_server.reset()
    return tls_sink_server


@pytest.fixture(scope="session")
def client_tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


# --- a webhook receiver -----------------------------------------------------------------


@dataclass
class Received:
    url: str
    path: str
    form: dict[str, str]
    signature: str | None


class Webhooks:
    """Records every POST; answers with `replies[path]` (TwiML) or an empty 200."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Received] = []
        self.replies: dict[str, str] = {}
        self._arrived = asyncio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(Received(str(request.url), request.path, {k: str(v) for k, v in form.items()},
                                      request.headers.get("X-Twilio-Signature")))
        self._arrived.set()
        reply = self.replies.get(request.path)
        if reply is None:
            return web.Response(status=200, text="")
        return web.Response(status=200, text=reply, content_type="application/xml")

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests


@pytest_asyncio.fixture(scope="session")
async def webhook_server() -> AsyncIterator[Webhooks]:
    receiver = Webhooks()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    yield receiver
    await runner.cleanup()


@pytest.fixture
def webhooks(webhook_server: Webhooks) -> Webhooks:
    webhook_server.reset()
    return webhook_server


# --- a real relay: Postfix ----------------------------------------------------------------


@pytest.fixture(scope="session")
def relay_sink_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCapture]:
    servers = ThreadedCapture(tmp_path_factory.mktemp("relay-sink"))
    yield servers
    servers.close()


@pytest.fixture
def relay_sink(relay_sink_servers: ThreadedCapture) -> ThreadedCapture:
    """Where Postfix relays to: every message it hands on, counted (duplicates too)."""
    relay_sink_servers.run(relay_sink_servers.smtp.reset)
    return relay_sink_servers


@pytest.fixture(scope="session")
def postfix_server(tmp_path_factory: pytest.TempPathFactory, relay_sink_servers: ThreadedCapture) -> Iterator[PostfixServer]:
    server = PostfixServer(tmp_path_factory.mktemp("postfix"), relay_sink_servers.smtp.port)
    failure = ""
    try:
        server.start()
    except ServerError as exc:  # failed outside the `except`: no chained traceback in the report
        failure = str(exc)
    if failure:
        server.stop()
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postfix(postfix_server: PostfixServer, relay_sink: ThreadedCapture) -> Iterator[PostfixServer]:
    """The running Postfix, with an empty recipient access map again after the test."""
    yield postfix_server
    postfix_server.set_recipient_access({})
