"""Secrets: commands that publish links refuse public defaults off loopback, and rotating
CONSENTRY_SECRET keeps links already sent working until the old secret is removed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re

import aiohttp
import pytest
from aiohttp import web

from engine.api import build_app
from engine.clock import system_clock
from engine.config import Settings
from metrics import Instruments
from tests.cli import consentry, ok
from tests.engine.scenario import AT, build

PUBLIC_URL = "https://links.acme.example"
SECRET_A = "secret-a-" + "a" * 40
SECRET_B = "secret-b-" + "b" * 40
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def dealership(tmp_path, sqlite_url):
    return build(tmp_path, sqlite_url, enforce_review=False), sqlite_url


def _unsubscribe_tokens(mails: list[dict]) -> list[str]:
    """The token of each message's one-click link, in recipient order."""
    tokens = []
    for mail in sorted(mails, key=lambda m: m["to"]):
        header = email.message_from_bytes(mail["raw"], policy=email.policy.default)["List-Unsubscribe"]
        [token] = re.findall(re.escape(PUBLIC_URL) + r"/u/([A-Za-z0-9_-]+)>", header)
        tokens.append(token)
    return tokens


def test_sending_commands_refuse_the_public_default_secret_when_links_leave_the_machine(dealership, monkeypatch):
    files, db = dealership
    monkeypatch.delenv("CONSENTRY_SECRET", raising=False)
    monkeypatch.setenv("CONSENTRY_PUBLIC_URL", PUBLIC_URL)
    for args in (
        ("campaign", "send", files["email"], "--at", AT),
        ("campaign", "resume", "spring-offer", "--tenant", "acme-motors"),
        ("worker", "--burst", "--metrics-port", "0"),
        ("send", "individual", "--tenant", "acme-motors", "--contact", "E1", "--channel", "email", "--body", "hi"),
    ):
        refused = consentry(*args, "--db", db)
        assert refused.code == 2, (args, refused)
        assert f"publishes links to {PUBLIC_URL}" in refused.err
        assert "CONSENTRY_SECRET has its public default" in refused.err
    # The public default may not linger as a retired secret either: it would still verify.
    monkeypatch.setenv("CONSENTRY_SECRET", SECRET_B)
    monkeypatch.setenv("CONSENTRY_SECRETS_RETIRED", Settings().secret)
    refused = consentry("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert refused.code == 2 and "CONSENTRY_SECRETS_RETIRED has its public default" in refused.err


def test_loopback_links_need_no_secret(dealership, capture, monkeypatch):
    files, db = dealership
    monkeypatch.delenv("CONSENTRY_SECRET", raising=False)
    monkeypatch.delenv("CONSENTRY_PUBLIC_URL", raising=False)
    assert "finished" in ok("campaign", "send", files["email"], "--at", AT, "--db", db).out


def test_retired_secrets_are_parsed_newest_first() -> None:
    settings = Settings.from_environ({"CONSENTRY_SECRET": "new", "CONSENTRY_SECRETS_RETIRED": " older , oldest,,"})
    assert settings.retired_secrets == ("older", "oldest")
    assert settings.link_secrets == (b"new", b"older", b"oldest")


def test_links_sent_under_a_rotated_secret_work_until_it_is_removed(dealership, capture, monkeypatch):
    files, db = dealership
    monkeypatch.setenv("CONSENTRY_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("CONSENTRY_SECRET", SECRET_A)
    ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    ava, family, mia = _unsubscribe_tokens(capture.call(capture.smtp.wait_for(3, timeout=10)))

    rotated = {"CONSENTRY_DATABASE_URL": db, "CONSENTRY_PUBLIC_URL": PUBLIC_URL,
               "CONSENTRY_SECRET": SECRET_B, "CONSENTRY_SECRETS_RETIRED": SECRET_A}

    async def with_a_retired(base: str, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{base}/u/{ava}") as response:
            assert response.status == 200
            assert "Unsubscribe from Acme Motors" in await response.text()
        for path in (f"p/{family}", f"u/{mia}", f"p/{mia}"):
            async with session.get(f"{base}/{path}") as response:
                assert response.status == 200, path
        async with session.post(f"{base}/u/{ava}", data=ONE_CLICK) as response:
            assert response.status == 200
            assert "You are unsubscribed" in await response.text()

    asyncio.run(_serving(Settings.from_environ(rotated), with_a_retired))
    # The one-click POST was recorded: the next campaign's gate sees the revocation.
    explained = ok("explain", "--tenant", "acme-motors", "--contact", "E1", "--channel", "email",
                   "--class", "marketing", "--json", "--db", db).out
    assert '"consent_revoked"' in explained

    # New links are signed with the current secret only.
    monkeypatch.setenv("CONSENTRY_SECRET", SECRET_B)
    monkeypatch.setenv("CONSENTRY_SECRETS_RETIRED", SECRET_A)
    capture.run(capture.smtp.reset)
    summer = files["email"].with_name("summer.yaml")
    summer.write_text(files["email"].read_text().replace("campaign: spring-offer", "campaign: summer-offer"))
    ok("campaign", "send", summer, "--at", AT, "--db", db)
    new = _unsubscribe_tokens(capture.call(capture.smtp.wait_for(2, timeout=10)))  # Ava unsubscribed
    assert len(new) == 2
    assert all(verify_with(SECRET_B, token) and not verify_with(SECRET_A, token) for token in new)

    async def with_a_removed(base: str, session: aiohttp.ClientSession) -> None:
        for method, path in (("GET", "u"), ("POST", "u"), ("GET", "p")):
            async with session.request(method, f"{base}/{path}/{mia}", data=ONE_CLICK) as response:
                assert response.status == 404, (method, path)
                assert "Link not recognised" in await response.text()

    del rotated["CONSENTRY_SECRETS_RETIRED"]
    asyncio.run(_serving(Settings.from_environ(rotated), with_a_removed))


def verify_with(secret: str, token: str):  # noqa: ANN201
    from engine.render import verify_token

    return verify_token(secret.encode(), token)


async def _serving(settings: Settings, work) -> None:  # noqa: ANN001
    """The real application on a free loopback port for the time of `work(base, session)`."""
    runner = web.AppRunner(build_app(settings, instruments=Instruments.fresh(), clock=system_clock))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await work(f"http://{host}:{port}", session)
    finally:
        await runner.cleanup()
