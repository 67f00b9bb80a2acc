"""Running the application: listen, report where, stop cleanly on SIGTERM / SIGINT.

On a stop signal the listening sockets close first, then requests in flight get
`SHUTDOWN_TIMEOUT_S` to finish (a one-click unsubscribe half-way through its transaction is
committed, not cut), then the database engine is disposed.

Connections go through a `ConnectionGuard` (engine/api/connections.py): header and body
deadlines, and a cap on open connections that stays below the process's open-file limit.
/metrics is served on a listener of its own, loopback by default: it names every tenant.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from engine.api.app import build_app
from engine.api.connections import ConnectionGuard, ConnectionLimits
from engine.clock import Clock
from engine.config import Settings

__all__ = ["SHUTDOWN_TIMEOUT_S", "Listening", "serve_until_stopped"]

SHUTDOWN_TIMEOUT_S = 10.0
# Open files kept out of the connection cap: asyncio accepts up to `BACKLOG` connections
# at a time before the cap closes any, and the database pool, the metrics listener and log
# files need theirs.
RESERVED_FILES = 256
BACKLOG = 32
# The kernel's queue of connections not accepted yet (capped by net.core.somaxconn). When
# clients connect faster than they are accepted (an attack, or the clients it evicts coming
# back) a full queue drops new connections, and a dropped SYN is retried only after a
# second: deep enough that a health check is queued, not dropped.
LISTEN_QUEUE = 4096
# After answering a request whose body it did not read (a 408, a 413), aiohttp keeps
# reading and discarding the rest for this long before closing (its default is 10 s).
LINGERING_S = 1.0


@dataclass(frozen=True, slots=True)
class Listening:
    """Where `serve` listens, what it lets in, and where its /metrics are."""

    urls: list[str]
    metrics_url: str | None
    max_connections: int
    open_file_limit: int


async def serve_until_stopped(
    settings: Settings,
    host: str,
    port: int,
    on_ready: Callable[[Listening], None],
    stop: asyncio.Event | None = None,
    *,
    clock: Clock,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set); `on_ready` is told where. `metrics`:
    the (host, port) of the /metrics listener, None for none."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    files = open_file_limit()
    guard = ConnectionGuard(ConnectionLimits(
        max_connections=max(1, min(settings.http_max_connections, files - RESERVED_FILES)),
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
    ))
    # No access log: /u/ and /p/ paths carry bearer tokens, which must not land in log files.
    runner = web.AppRunner(
        build_app(settings, clock=clock, guard=guard), shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None,
        lingering_time=LINGERING_S,
    )
    await runner.setup()
    exporter = None
    try:
        site = GuardedSite(runner, host, port, guard)
        await site.start()
        if metrics is not None:
            from metrics import start_metrics_server

            exporter = start_metrics_server(*metrics)
        on_ready(Listening(
            [_url(address) for address in runner.addresses], exporter.url if exporter else None,
            guard.limits.max_connections, files,
        ))
        await stop.wait()
    finally:
        if exporter is not None:
            exporter.close()
        guard.close_all()
        await runner.cleanup()
        for signum in handled:
            loop.remove_signal_handler(signum)


class GuardedSite(web.BaseSite):
    """aiohttp's TCP site, with every connection passed through a ConnectionGuard."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        return _url((self._host, self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner is set up before a site is made
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog, reuse_address=True,
        )
        # asyncio listens with the backlog it also takes as the number of connections to
        # accept in one go; deepen only the kernel's queue (listen() again on a duplicate
        # of the same socket).
        for listening in self._server.sockets:
            with socket.socket(fileno=os.dup(listening.fileno())) as duplicate:
                duplicate.listen(LISTEN_QUEUE)


def open_file_limit() -> int:
    """The process's limit on open files, raised first to the most it may be (the soft
    limit is often 1,024 while the hard one allows far more): each connection is a file."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. macOS caps it below the hard limit
            pass
    return soft


def _url(address: object) -> str:
    host, port = address[0], address[1]  # type: ignore[index]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
