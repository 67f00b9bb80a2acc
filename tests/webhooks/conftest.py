"""Outbound webhooks against real parts: the HTTP service on loopback over SQLite and
PostgreSQL (the seed of tests/api), a receiver in its own process (receiver.py) and the
real dispatcher, with retry delays of tens of milliseconds instead of seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from engine.api import build_app, create_api_key
from engine.clock import system_clock
from engine.config import Settings
from engine.db.models import WebhookMessage
from engine.db.session import make_engine
from engine.webhooks.dispatcher import Dispatcher, DispatchOptions
from metrics import Instruments
from tests.api.conftest import AUTH_TOKEN, PUBLIC_URL, ROLES, SECRET, Api, _seed

ROOT = Path(__file__).resolve().parents[2]

# The policy of production, quicker: 5 attempts, 20 ms doubling to at most 200 ms.
FAST = DispatchOptions(attempts=5, retry_base_s=0.02, retry_cap_s=0.2, timeout_s=2.0, claim_ttl_s=6.0,
                       concurrency=8, poll_s=0.02)
FAST_ENV = {
    "CONSENTRY_WEBHOOK_ATTEMPTS": "50", "CONSENTRY_WEBHOOK_RETRY_BASE_S": "0.02",
    "CONSENTRY_WEBHOOK_RETRY_CAP_S": "0.2", "CONSENTRY_WEBHOOK_TIMEOUT_S": "1",
    "CONSENTRY_WEBHOOK_CLAIM_TTL_S": "3", "CONSENTRY_WEBHOOK_CONCURRENCY": "8",
}


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The service of tests/api (two tenants, a key per role), without its own
    dispatcher: each test runs the dispatchers it needs."""
    engine = make_engine(db_url)
    runner = None
    try:
        tenants = await _seed(engine, tmp_path)
        settings = Settings(database_url=db_url, public_url=PUBLIC_URL, secret=SECRET, twilio_auth_token=AUTH_TOKEN,
                            webhook_dispatch=False)
        instruments = Instruments.fresh()
        runner = web.AppRunner(build_app(settings, engine=engine, instruments=instruments, clock=system_clock))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            service = Api(f"http://{host}:{port}", session, engine, settings, instruments, tenants)
            async with engine.begin() as conn:
                for tenant in tenants:
                    for role in ROLES:
                        _record, key = await create_api_key(conn, tenant, role, f"{role} key", system_clock)
                        service.keys[(tenant, role)] = key
            yield service
    finally:
        if runner is not None:
            await runner.cleanup()
        await engine.dispose()


class Receiver:
    """tests/webhooks/receiver.py in a subprocess; keeps its port across restarts."""

    def __init__(self, out: Path, delay_ms: float = 0) -> None:
        self.secret = ""  # known once the endpoint is registered at `url`
        self.out = out
        self.delay_ms = delay_ms
        self.port = _free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, secret: str | None = None) -> None:
        self.secret = secret or self.secret
        args = [sys.executable, "-m", "tests.webhooks.receiver", "--secret", self.secret, "--out", str(self.out),
                "--port", str(self.port), "--delay-ms", str(self.delay_ms)]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("listening on "), line
        self.port = int(line.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no goodbye, connections cut mid-request."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def events(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line.strip()]

    def ids(self) -> set[str]:
        return {event["id"] for event in self.events()}


def _free_port() -> int:
    # The endpoint's URL is registered before the receiver starts (it needs the secret
    # that registration returns), so the port is chosen first.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """Receivers, not yet started: `receiver.url` to register, then `receiver.start(secret)`."""
    started: list[Receiver] = []

    def make(delay_ms: float = 0, name: str = "events") -> Receiver:
        receiver = Receiver(tmp_path / f"{name}.jsonl", delay_ms)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.kill()


@contextlib.asynccontextmanager
async def dispatching(api: Api, options: DispatchOptions = FAST) -> AsyncIterator[Dispatcher]:
    """The real dispatcher, in this process, for the block's duration."""
    dispatcher = Dispatcher(api.engine, system_clock, options, api.instruments)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 60, what: str = "") -> None:
    """Wait for a condition (polled every 20 ms), failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


async def outbox(api: Api, endpoint_id: int | None = None) -> list[dict]:
    messages = WebhookMessage.__table__
    query = select(messages).order_by(messages.c.id)
    if endpoint_id is not None:
        query = query.where(messages.c.endpoint_id == endpoint_id)
    async with api.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def register(api: Api, url: str, event_types: list[str], tenant: str = "acme-motors") -> dict:
    async with api.session.post(api.url("/api/v1/webhooks"), json={"url": url, "event_types": event_types},
                                headers=api.auth(tenant, "admin")) as response:
        assert response.status == 201, await response.text()
        return await response.json()


def dispatcher_env(db_url: str) -> dict[str, str]:
    return {**os.environ, **FAST_ENV, "CONSENTRY_DATABASE_URL": db_url}


ALL_CONSENT = ["consent.opt_out", "consent.opt_in", "consent.revoke", "consent.grant", "consent.block",
               "consent.unblock"]


from tests.engine.conftest import capture  # noqa: E402, F401 - the capture servers, for a campaign send
