"""Slow and idle clients cannot take the HTTP service offline.

`consentry serve` is reached by mailbox providers (one-click unsubscribe), Twilio (webhooks)
and customers' browsers: a few thousand connections that send nothing, or trickle their
headers a byte at a time (slowloris), must not stop it from answering the others. aiohttp
bounds the size of a request line and headers, but not how long they take or how many
connections are open, so this module adds, around aiohttp's own protocol:

- a **header deadline**: a request's line and headers must all arrive within
  `header_timeout_s` of its first byte (of the connection, for the first request), or the
  connection is closed. A keep-alive connection waiting between requests is not timed by
  it (a reverse proxy keeps such connections); the cap below reclaims those under pressure;
- a **body deadline** (the middleware): the body must arrive within `body_timeout_s`, else
  408 and the connection closes;
- a **connection cap**: beyond `max_connections` open connections, a new one closes the
  connection that has waited longest without a request in progress (idle, or still sending
  its headers), so a fresh client is always served; when every connection is in the middle
  of a request, the new one is closed instead. The cap is kept below the open-file limit
  (engine/api/server.py): past that limit the kernel refuses to hand over new connections
  at all and asyncio stops accepting for a second at a time, which is what took
  `/healthz` offline.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from engine.api.problems import problem

__all__ = ["ConnectionGuard", "ConnectionLimits"]

# The most of a request head collected here before it is handed to aiohttp regardless
# (whose parser then refuses what is too long: 8 KB a line, 128 headers). It bounds what a
# connection that never finishes its headers holds: 64 KB × the cap at worst.
HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


class ConnectionGuard:
    """Wraps the protocol factory of an aiohttp server (`protocol_factory`) and adds its
    `middleware` to the application, which tells it when a request is being handled."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        # Open connections, the one waiting longest without a request in progress first.
        self._open: OrderedDict[_GuardedConnection, None] = OrderedDict()
        self._by_handler: dict[asyncio.BaseProtocol, _GuardedConnection] = {}
        # What the guard did, for logs and tests.
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """`factory` makes aiohttp's protocol, once a connection's first request head is in."""
        return lambda: _GuardedConnection(self, factory)

    def close_all(self) -> None:
        """Close the connections aiohttp never saw (their first request is not in yet);
        aiohttp closes its own on shutdown."""
        for connection in list(self._open):
            if connection.handler is None:
                connection.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        connection = self._by_handler.get(request.protocol)  # type: ignore[call-overload]
        if connection is not None:
            connection.request_started()
        try:
            if request.body_exists:
                try:
                    async with asyncio.timeout(self.limits.body_timeout_s):
                        await request.read()  # kept by aiohttp for the handler's post() / read()
                except TimeoutError:
                    response = problem(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s")
                    response.force_close()
                    return response
            return await handler(request)
        finally:
            if connection is not None:
                connection.request_finished()

    # -- used by connections --------------------------------------------------------------

    def opened(self, connection: _GuardedConnection) -> None:
        self._open[connection] = None
        if len(self._open) <= self.limits.max_connections:
            return
        for candidate in self._open:
            if candidate is not connection and not candidate.busy:
                self.evicted += 1
                self.forget(candidate)
                candidate.close()
                return
        self.refused += 1
        self.forget(connection)
        connection.close()

    def idle(self, connection: _GuardedConnection) -> None:
        if connection in self._open:
            self._open.move_to_end(connection)

    def forget(self, connection: _GuardedConnection) -> None:
        self._open.pop(connection, None)

    def handed_over(self, connection: _GuardedConnection) -> None:
        assert connection.handler is not None
        self._by_handler[connection.handler] = connection

    def lost(self, connection: _GuardedConnection) -> None:
        self.forget(connection)
        if connection.handler is not None:
            self._by_handler.pop(connection.handler, None)


class _GuardedConnection(asyncio.Protocol):
    """One connection. Until its first request's line and headers are complete, its bytes
    are only collected: aiohttp's protocol (a parser, a task, timers) is made then, and gets
    them all at once, so a connection that never finishes its headers costs next to
    nothing. From then on every event is forwarded to it."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.factory = factory
        self.handler: asyncio.Protocol | None = None
        self.head = bytearray()
        self.transport: asyncio.BaseTransport | None = None
        self.busy = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._arm()
        self.guard.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            searched = max(0, len(self.head) - 2)
            self.head += data
            # The head ends at the first empty line (a bare LF is tolerated, as by aiohttp).
            if self.head.find(b"\n\r\n", searched) < 0 and self.head.find(b"\n\n", searched) < 0:
                if len(self.head) <= HEAD_LIMIT:
                    return
            self._hand_over()
            return
        if not self.busy and self.deadline is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.lost(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def request_started(self) -> None:
        self.busy = True
        self._disarm()

    def request_finished(self) -> None:
        self.busy = False
        self.guard.idle(self)

    def close(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def _hand_over(self) -> None:
        assert self.transport is not None
        self.handler = self.factory()
        self.guard.handed_over(self)
        self.handler.connection_made(self.transport)
        head, self.head = bytes(self.head), bytearray()
        self.handler.data_received(head)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.guard.limits.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expire(self) -> None:
        self.deadline = None
        if not self.busy:
            self.guard.timed_out += 1
            self.guard.forget(self)
            self.close()
