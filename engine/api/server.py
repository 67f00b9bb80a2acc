"""Running the application: listen, report where, stop cleanly on SIGTERM / SIGINT.

On a stop signal the listening sockets close first, then requests in flight get
`SHUTDOWN_TIMEOUT_S` to finish (a one-click unsubscribe half-way through its transaction is
committed, not cut), then the database engine is disposed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from engine.api.app import build_app
from engine.clock import Clock, system_clock
from engine.config import Settings

__all__ = ["SHUTDOWN_TIMEOUT_S", "serve_until_stopped"]

SHUTDOWN_TIMEOUT_S = 10.0


async def serve_until_stopped(
    settings: Settings,
    host: str,
    port: int,
    on_ready: Callable[[list[str]], None],
    stop: asyncio.Event | None = None,
    clock: Clock = system_clock,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set); `on_ready` gets the listening URLs."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    # No access log: /u/ and /p/ paths carry bearer tokens, which must not land in log files.
    runner = web.AppRunner(build_app(settings, clock=clock), shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        on_ready([_url(address) for address in runner.addresses])
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _url(address: object) -> str:
    host, port = address[0], address[1]  # type: ignore[index]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
