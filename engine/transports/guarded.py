"""Connections that refuse to write once the sender's guard says no.

Why at the socket: between the moment our code hands a message to a client library and the
moment its bytes leave there are awaits we do not control. aiohttp takes a pooled connection,
buffers the headers and writes the body from a task scheduled for the next turn of the event
loop; aiosmtplib sends DATA, waits for 354 and only then writes the message. A process frozen
(SIGSTOP, a paused VM or container) inside such a gap wakes up and completes the send,
although its claim on the message lapsed meanwhile and another runner has sent it. The
guard in `transport.write` is the last moment there is: a refused write aborts the
connection with its buffered bytes, so the relay or provider never sees the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from engine.transports.errors import DispatchCancelled

Guard = Callable[[], bool]


class _GuardedTransport:
    """A transport proxy: `write` / `writelines` ask the guard first."""

    # The reads aiohttp makes several times per request (is_closing before every write,
    # pause/resume_reading as a response streams in) are bound once here: found through
    # `__getattr__` each costs a failed attribute lookup and a second one on every call.
    __slots__ = ("_guard_of", "_real", "is_closing", "pause_reading", "resume_reading",
                 "get_extra_info", "get_write_buffer_size")

    def __init__(self, real: asyncio.Transport, guard_of: Callable[[], Guard | None]) -> None:
        self._real = real
        self._guard_of = guard_of
        self.is_closing = real.is_closing
        self.pause_reading = real.pause_reading
        self.resume_reading = real.resume_reading
        self.get_extra_info = real.get_extra_info
        self.get_write_buffer_size = real.get_write_buffer_size

    def _check(self) -> None:
        guard = self._guard_of()
        if guard is not None and not guard():
            self._real.abort()  # drop what is buffered: close() would still flush it
            raise DispatchCancelled("the sender lost its claim before the request was written; nothing was sent")

    def write(self, data: bytes) -> None:
        self._check()
        self._real.write(data)

    def writelines(self, chunks: Any) -> None:
        self._check()
        self._real.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def guard_writes(protocol: Any, guard_of: Callable[[], Guard | None]) -> None:
    """Route `protocol`'s writes through the guard (its transport is replaced by a proxy).

    Call it once the connection is fully set up: TLS upgrades need the real transport.
    """
    if protocol.transport is not None and not isinstance(protocol.transport, _GuardedTransport):
        protocol.transport = _GuardedTransport(protocol.transport, guard_of)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose new connections write through `_GuardedTransport`.

    `guard_of` returns the guard in force (or None for no check) at the moment of a write.
    """

    def __init__(self, guard_of: Callable[[], Guard | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard_of = guard_of

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        protocol = await super()._create_connection(req, traces, timeout)
        guard_writes(protocol, self._guard_of)
        return protocol
