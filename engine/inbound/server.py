"""Running the inbound SMTP listener (`consentry inbound smtp`): aiosmtpd on the caller's loop.

It is the MX (or the relay's transport target) for the return-path and unsubscribe
addresses. No STARTTLS and no AUTH of its own: on the public internet put it behind the
MTA that terminates TLS for your domain (Postfix `transport_maps` to this port), as
docs/inbound-mail.md shows; alone it listens on loopback.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable

from aiosmtpd.smtp import SMTP
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.config import Settings
from engine.db.session import make_engine
from engine.inbound.handler import InboundHandler
from metrics import Instruments, default_instruments

__all__ = ["InboundServer", "MAX_MESSAGE_BYTES", "serve_inbound_until_stopped"]

# Bounces and complaints carry the original message; 10 MB covers any we send, and a
# larger message is refused with 552 before it costs memory.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# A client that says nothing for this long is dropped (RFC 5321 4.5.3.2 suggests 5 minutes
# per command; 60 s is plenty for the MTAs that talk to us and bounds idle connections).
IDLE_TIMEOUT_S = 60.0


class InboundServer:
    """The listener on `host:port` (0: a free port, read back from `port`)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 2525, *, engine: AsyncEngine | None = None,
                 instruments: Instruments | None = None, clock: Clock) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self._owns_engine = engine is None
        self.engine = engine or make_engine(settings.database_url)
        self.handler = InboundHandler(self.engine, settings, clock, instruments or default_instruments())
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        hostname = socket.getfqdn()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname=hostname, ident="Consentry inbound", data_size_limit=MAX_MESSAGE_BYTES,
                         enable_SMTPUTF8=True, timeout=IDLE_TIMEOUT_S),
            self.host, self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def addresses(self) -> list[str]:
        assert self._server is not None
        return [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in self._server.sockets]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._owns_engine:
            await self.engine.dispose()


async def serve_inbound_until_stopped(
    settings: Settings, host: str, port: int, on_ready: Callable[[list[str]], None],
    stop: asyncio.Event | None = None, *, clock: Clock,
) -> None:
    """Listen until SIGTERM/SIGINT (or `stop`); `on_ready` gets `host:port` of each socket."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    server = InboundServer(settings, host, port, clock=clock)
    await server.start()
    try:
        on_ready(server.addresses)
        await stop.wait()
    finally:
        await server.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)
