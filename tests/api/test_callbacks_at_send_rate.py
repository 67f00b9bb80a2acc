"""Status callbacks keep up with a campaign sending at full rate (issue 14, part 5).

The real pieces, as `make demo` runs them: `consentry campaign send` in its own process
sends through the SMS capture server, which posts a signed `sent` and then a `delivered` (or
`undelivered`) callback for every text, as fast as they go out, to the real application of
`consentry serve` on a free loopback port. On SQLite the sender's commits and the
callbacks' share one write lock: the callbacks used to time out (a lost status, as Twilio
does not wait), and an `undelivered` that outran the sender's commit of its message was
dropped as "no delivery with MessageSid".
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, insert, select
from twilio.request_validator import RequestValidator

from campaigns.definition import parse_campaign
from campaigns.tenant_file import parse_tenant_text
from engine.api import build_app
from engine.api.webhooks import WRITER
from engine.clock import system_clock
from engine.config import Settings
from engine.db.migrate import upgrade
from engine.db.models import ConsentEvent, Contact, Delivery
from engine.db.session import make_engine
from engine.db.tenants import apply_policy, load_tenant
from engine.imports import import_contacts
from engine.send.launch import launch
from tests.capture import ThreadedCapture

# The service's clock and the one the fixture stamps records with: these are requests made now.
CLOCK = system_clock
AUTH_TOKEN = "callback-test-auth-token"
TENANT = """\
tenant: rapid-motors
name: Rapid Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
classes:
  service: {mode: opt_out}
"""
CAMPAIGN = """\
campaign: service-blast
tenant: rapid-motors
kind: bulk
channel: sms
class: service
template: service_reminder
sender: {phone: "+15550001111"}
rate: {per_second: 100000}
"""
RECIPIENTS = 1_500
UNDELIVERED_EVERY = 10  # every 10th number's texts end `undelivered`, error 30003


def phone(n: int) -> str:
    return f"+1213555{n:04d}"


def _contacts_csv(count: int) -> str:
    lines = ["external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at"]
    lines += [f"R{n},Pat,Lee{n},,{phone(n)},America/Los_Angeles,US,,Website,," for n in range(count)]
    return "\n".join(lines) + "\n"


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@asynccontextmanager
async def serving(db_url: str, *, group_commit: bool = True) -> AsyncIterator[tuple[str, web.Application]]:
    """The application of `consentry serve` on a free port; its public URL is where it listens."""
    sock = _listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(database_url=db_url, public_url=url, twilio_auth_token=AUTH_TOKEN,
                        twilio_group_commit=group_commit, webhook_dispatch=False)
    app = build_app(settings, clock=CLOCK)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield url, app
    finally:
        await runner.cleanup()


async def _seed(db_url: str, tmp_path: Path, count: int) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await apply_policy(conn, parse_tenant_text(TENANT), TENANT, CLOCK)
        contacts = tmp_path / "contacts.csv"
        contacts.write_text(_contacts_csv(count), encoding="utf-8")
        await import_contacts(engine, str(contacts), "rapid-motors", workers=0, clock=CLOCK)
    finally:
        await engine.dispose()


async def _send(definition: Path, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "campaign", "send", str(definition), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def _deliveries(db_url: str) -> list[tuple[str, str, str | None]]:
    engine = make_engine(db_url)
    table = Delivery.__table__
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(table.c.address, table.c.state, table.c.error).order_by(table.c.address))
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


@pytest.fixture
def capture(tmp_path: Path):  # noqa: ANN201
    undelivered = [phone(n) for n in range(0, RECIPIENTS, UNDELIVERED_EVERY)]
    sink = ThreadedCapture(tmp_path / "capture", sms={"undelivered": undelivered, "auth_token": AUTH_TOKEN})
    yield sink
    sink.close()


async def test_every_callback_is_answered_and_recorded_while_a_campaign_sends(
    db_url: str, tmp_path: Path, capture: ThreadedCapture
) -> None:
    await _seed(db_url, tmp_path, RECIPIENTS)
    definition = tmp_path / "campaign.yaml"
    definition.write_text(CAMPAIGN, encoding="utf-8")
    async with serving(db_url) as (url, _app):
        env = {**os.environ, **capture.env, "CONSENTRY_DATABASE_URL": db_url, "CONSENTRY_PUBLIC_URL": url,
               "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
        report = await _send(definition, env)
        # Two callbacks a text (sent, then delivered or undelivered), posted as it went out.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            capture.sms.wait_for_callbacks(2 * RECIPIENTS, timeout=120), capture.loop))
    assert f"sent {RECIPIENTS:,}" in report, report
    callbacks = list(capture.sms.callbacks)
    failed = [callback for callback in callbacks if callback.get("http_status") != 204]
    assert failed == [], f"{len(failed)} of {len(callbacks)} callbacks failed, first: {failed[:3]}"
    assert Counter(callback["status"] for callback in callbacks) == {
        "sent": RECIPIENTS, "delivered": RECIPIENTS - RECIPIENTS // UNDELIVERED_EVERY,
        "undelivered": RECIPIENTS // UNDELIVERED_EVERY,
    }
    # Every row has its final status: an undelivered text is a failed delivery with Twilio's error.
    expected = sorted(
        (phone(n), "failed", "twilio undelivered 30003") if n % UNDELIVERED_EVERY == 0 else (phone(n), "sent", None)
        for n in range(RECIPIENTS)
    )
    assert await _deliveries(db_url) == expected


async def test_a_failure_that_outruns_the_senders_commit_is_recorded(db_url: str, tmp_path: Path) -> None:
    """The callback arrives before any delivery carries its MessageSid: it waits for it."""
    await _seed(db_url, tmp_path, 1)
    sid = "SM" + "c" * 32
    async with serving(db_url) as (url, app):
        params = {"AccountSid": "AC" + "0" * 32, "MessageSid": sid, "SmsSid": sid, "MessageStatus": "undelivered",
                  "SmsStatus": "undelivered", "ErrorCode": "21610", "From": "+15550001111", "To": phone(0)}
        path = url + "/webhooks/twilio/rapid-motors/status"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(path, params)
        async with aiohttp.ClientSession() as http:
            post = asyncio.create_task(http.post(path, data=params, headers={"X-Twilio-Signature": signature}))
            writer = app[WRITER]
            async with asyncio.timeout(10):
                while writer.waiting == 0:  # the writer looked, found no delivery, and holds it
                    await asyncio.sleep(0.005)
            assert not post.done()
            await _insert_sent_delivery(db_url, sid)
            async with asyncio.timeout(10):
                response = await post
            assert response.status == 204
            response.release()
    assert await _deliveries(db_url) == [(phone(0), "failed", "twilio undelivered 21610")]
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            blocks = (await conn.execute(select(func.count()).select_from(ConsentEvent.__table__)
                                         .where(ConsentEvent.__table__.c.cause == "carrier_unsubscribed"))).scalar_one()
    finally:
        await engine.dispose()
    assert blocks == 1


async def _insert_sent_delivery(db_url: str, sid: str) -> None:
    """What the sender commits once Twilio accepted the text."""
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            tenant = await load_tenant(conn, "rapid-motors")
            definition = parse_campaign({
                "campaign": "one-text", "tenant": tenant.code, "kind": "bulk", "channel": "sms", "class": "service",
                "template": "service_reminder", "sender": {"phone": "+15550001111"},
            })  # fmt: skip
            record = await launch(conn, definition, tenant, {}, CLOCK())
            contact = (await conn.execute(select(Contact.id).where(Contact.tenant_id == tenant.id))).scalar_one()
            stamp = CLOCK()
            await conn.execute(insert(Delivery).values(
                tenant_id=tenant.id, campaign_id=record.id, contact_id=contact, channel="sms", kind="bulk",
                purpose="campaign", address=phone(0), decision="send", state="sent", provider_id=sid, attempts=1,
                sent_at_us=stamp, created_at_us=stamp, updated_at_us=stamp,
            ))  # fmt: skip
    finally:
        await engine.dispose()
