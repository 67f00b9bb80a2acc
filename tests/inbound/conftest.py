"""The inbound listener and the capture servers, each on a loop of its own thread: the CLI
under test calls `asyncio.run` itself, as any client of a running server would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from engine.clock import system_clock
from engine.config import Settings
from engine.inbound import InboundServer
from metrics import Instruments


class ThreadedListener:
    """`consentry inbound smtp`'s server on a free loopback port, with its own metrics."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="inbound", daemon=True)
        self.thread.start()
        self.instruments = Instruments.fresh()
        self.server = InboundServer(Settings.from_environ(database_url=database_url), "127.0.0.1", 0,
                                    instruments=self.instruments, clock=system_clock)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        self.port = self.server.port

    def count(self, kind: str, tenant: str = "acme-motors") -> float:
        value = self.instruments.registry.get_sample_value("consentry_inbound_mail_total", {"tenant": tenant, "kind": kind})
        return value or 0.0

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def capture(tmp_path, monkeypatch):
    """Both capture servers on free loopback ports; the CLI is pointed at them."""
    from tests.capture import ThreadedCapture

    servers = ThreadedCapture(tmp_path / "capture")
    for name, value in servers.env.items():
        monkeypatch.setenv(name, value)
    yield servers
    servers.close()


@pytest.fixture
def listener_for() -> Iterator:
    """Starts the listener on a database (after the test has created it)."""
    started: list[ThreadedListener] = []

    def start(database_url: str) -> ThreadedListener:
        listener = ThreadedListener(database_url)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.close()
