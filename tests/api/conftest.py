"""The real HTTP service on 127.0.0.1 port 0, over a real database (SQLite and PostgreSQL).

Each test gets a fresh database with two tenants, their contacts (imported with the real
importer), an API key per role, and the application built by `engine.api.build_app`,
served by aiohttp's own runner. Requests go through aiohttp.ClientSession; Twilio webhooks
are signed with twilio's RequestValidator, as Twilio signs them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from twilio.request_validator import RequestValidator

from campaigns.tenant_file import parse_tenant_text
from engine.api import build_app, create_api_key
from engine.capture import SmtpCaptureServer
from engine.clock import system_clock
from engine.config import Settings
from engine.db.migrate import upgrade
from engine.db.models import ConsentEvent, Contact
from engine.db.session import make_engine
from engine.db.tenants import TenantRecord, apply_policy
from engine.imports import import_contacts
from engine.render import sign_token
from metrics import Instruments, start_metrics_server
from tests.capture import ThreadedCapture

# Deliberately not the address the test server listens on: signatures and links must be
# built from the configured public URL, never from the request's Host.
PUBLIC_URL = "https://links.acme.example"
SECRET = "api-test-secret-0123456789"
AUTH_TOKEN = "twilio-test-auth-token"
# The service's clock, and the one every record the fixture makes is stamped with: these
# tests are about requests made now, so it is the wall clock, said once here.
CLOCK = system_clock

ACME = """\
tenant: acme-motors
name: Acme Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
postal_address: "1 Main St, Springfield, CA 90000, USA"
classes:
  marketing: {mode: opt_out}
  service: {mode: opt_out}
  survey: {mode: opt_in}
  transactional: {mode: exempt}
sms:
  opt_in_required: true
"""

BRAVO = """\
tenant: bravo-cars
name: Bravo Cars
country: US
timezone: America/New_York
"""

ACME_CONTACTS = """\
external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at
C1,Ava,Smith,ava@example.com,(213) 555-0101,America/Los_Angeles,US,,Website,,
C2,Liam,Garcia,liam@example.com,(213) 555-0102,America/Los_Angeles,US,,Website,,
C3,Emma,Garcia,emma@example.com,(213) 555-0102,America/Los_Angeles,US,,Website,,
C4,Noah,Lee,noah@example.com,,America/Los_Angeles,US,,Website,,
"""

# B1 shares Ava's phone number, and Bravo has its own C1: neither may be touched through
# Acme's links, webhooks or keys.
BRAVO_CONTACTS = """\
external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at
B1,Bob,Stone,bob@bravo.example,(213) 555-0101,America/New_York,US,,Walk-in,,
C1,Carl,Ortiz,carl@bravo.example,(646) 555-0111,America/New_York,US,,Walk-in,,
"""

ROLES = ("admin", "manager", "marketer", "sales", "viewer")


@dataclass
class Api:
    """A running service and what a test needs to talk to it."""

    base_url: str
    session: aiohttp.ClientSession
    engine: AsyncEngine
    settings: Settings
    instruments: Instruments
    tenants: dict[str, TenantRecord]
    # The private /metrics listener, as `consentry serve` runs it beside the service.
    metrics_url: str = ""
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, role) -> key
    # Where the service's email and texts go (shared by the session's tests).
    sink: ThreadedCapture | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def auth(self, tenant: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[(tenant, role)]}"}

    async def contact_id(self, tenant: str, external_id: str) -> int:
        contacts = Contact.__table__
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(contacts.c.id).where(
                        contacts.c.tenant_id == self.tenants[tenant].id, contacts.c.external_id == external_id
                    )
                )
            ).scalar_one()

    async def token(self, tenant: str, external_id: str, channel: str = "email", campaign_id: int | None = None) -> str:
        contact_id = await self.contact_id(tenant, external_id)
        return sign_token(SECRET.encode(), self.tenants[tenant].id, campaign_id, contact_id, channel)

    async def events(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The whole ledger (of one tenant), oldest first, with each contact's external_id."""
        events, contacts = ConsentEvent.__table__, Contact.__table__
        query = (
            select(events, contacts.c.external_id)
            .join(contacts, contacts.c.id == events.c.contact_id)
            .order_by(events.c.id)
        )
        if tenant is not None:
            query = query.where(events.c.tenant_id == self.tenants[tenant].id)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    def twilio_post(
        self, path: str, params: Mapping[str, str], *, token: str = AUTH_TOKEN, signed_url: str | None = None
    ):  # noqa: ANN201 - an aiohttp request context manager
        """POST as Twilio does: form-encoded, signed over the public URL and the params."""
        signature = RequestValidator(token).compute_signature(signed_url or PUBLIC_URL + path, params)
        return self.session.post(self.url(path), data=dict(params), headers={"X-Twilio-Signature": signature})


def inbound_sms(tenant_number: str, sender: str, body: str, sid: str | None = None) -> dict[str, str]:
    """The parameters of a Twilio incoming-message webhook; each message its own MessageSid,
    as Twilio gives (pass `sid` to replay one)."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "LOS ANGELES",
        "FromZip": "90012", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received", "FromCity": "LOS ANGELES",
        "Body": body, "FromCountry": "US", "To": tenant_number, "ToZip": "90012", "NumSegments": "1",
        "MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": sender, "ApiVersion": "2010-04-01",
    }  # fmt: skip


async def _seed(engine: AsyncEngine, tmp_path: Path) -> dict[str, TenantRecord]:
    await upgrade(engine)
    tenants = {}
    for text, contacts in ((ACME, ACME_CONTACTS), (BRAVO, BRAVO_CONTACTS)):
        policy = parse_tenant_text(text)
        async with engine.begin() as conn:
            record, _changed = await apply_policy(conn, policy, text, CLOCK)
        tenants[record.code] = record
        path = tmp_path / f"{record.code}-contacts.csv"
        path.write_text(contacts, encoding="utf-8")
        await import_contacts(engine, str(path), record.code, workers=0, clock=CLOCK)
    return tenants


@pytest.fixture(scope="session")
def api_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedCapture]:
    """The capture SMTP and SMS servers every API test's service sends to (replies): one for
    the session, so a test counts what arrived for its own addresses."""
    sink = ThreadedCapture(tmp_path_factory.mktemp("api-sink"))
    yield sink
    sink.close()


@pytest.fixture
async def api(db_url: str, tmp_path: Path, api_sink: ThreadedCapture) -> AsyncIterator[Api]:
    engine = make_engine(db_url)
    runner = None
    exporter = None
    try:
        tenants = await _seed(engine, tmp_path)
        settings = Settings(
            database_url=db_url, public_url=PUBLIC_URL, secret=SECRET, twilio_auth_token=AUTH_TOKEN,
            smtp_url=api_sink.env["CONSENTRY_SMTP_URL"], twilio_url=api_sink.env["CONSENTRY_TWILIO_URL"],
        )
        instruments = Instruments.fresh()
        runner = web.AppRunner(build_app(settings, engine=engine, instruments=instruments, clock=CLOCK))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        exporter = start_metrics_server("127.0.0.1", 0, registry=instruments.registry)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            service = Api(f"http://{host}:{port}", session, engine, settings, instruments, tenants, exporter.url,
                          sink=api_sink)
            await _issue_keys(service)
            yield service
    finally:
        if exporter is not None:
            exporter.close()
        if runner is not None:
            await runner.cleanup()
        await engine.dispose()


async def _issue_keys(service: Api) -> None:
    """One API key per tenant and role (`service.keys[(tenant, role)]`)."""
    async with service.engine.begin() as conn:
        for tenant in service.tenants:
            for role in ROLES:
                _record, key = await create_api_key(conn, tenant, role, f"{role} key", CLOCK)
                service.keys[(tenant, role)] = key


@contextlib.asynccontextmanager
async def service_with_relay(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The `api` fixture's service sending to a capture SMTP relay of its own (`api.smtp`),
    with quick retries, so a recipient refused with a 4xx is left pending in well under a
    second (campaign lifecycle tests, the desk's campaign pages)."""
    engine = make_engine(db_url)
    smtp = await SmtpCaptureServer(port=0, store_dir=tmp_path / "capture").start()
    runner = None
    try:
        tenants = await _seed(engine, tmp_path)
        settings = Settings(
            database_url=db_url, public_url=PUBLIC_URL, secret=SECRET, twilio_auth_token=AUTH_TOKEN,
            smtp_url=f"smtp://127.0.0.1:{smtp.port}", retry_attempts=2, retry_base_s=0.01, claim_ttl_s=3,
            webhook_dispatch=False,
        )
        runner = web.AppRunner(build_app(settings, engine=engine, instruments=Instruments.fresh(), clock=CLOCK))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            service = Api(f"http://{host}:{port}", session, engine, settings, Instruments.fresh(), tenants)
            service.smtp = smtp  # type: ignore[attr-defined]
            await _issue_keys(service)
            yield service
    finally:
        if runner is not None:
            await runner.cleanup()
        await smtp.stop()
        await engine.dispose()
