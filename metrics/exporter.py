"""Serving ``/metrics``: a standalone HTTP server (workers) and an aiohttp handler (the API).

Both speak the Prometheus text format, or OpenMetrics when the scraper asks for it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder

__all__ = [
    "MetricsServer",
    "start_metrics_server",
    "metrics_handler",
    "add_metrics_route",
    "REGISTRY_KEY",
]

# Set on an aiohttp application to serve a registry other than the process-wide one.
REGISTRY_KEY = web.AppKey("consentry_metrics_registry", CollectorRegistry)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process open


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one access-log line per scrape every 15 s is noise


class _Scrapes:
    """Numbers the scrapes as they begin, so a short-lived process can wait for one that
    began after its last increment (``MetricsServer.wait_for_scrape``)."""

    def __init__(self) -> None:
        self._begun = 0  # scrapes begun so far; the n-th is numbered n
        self._latest_served = 0  # the highest number of a scrape served
        self._changed = threading.Condition()

    def wrap(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/favicon.ico":  # a browser's, not a scrape
                return app(environ, start_response)
            with self._changed:
                self._begun += 1
                number = self._begun
            # prometheus-client encodes the whole registry inside `app`: once it returns,
            # this scrape holds every value recorded before it began.
            body = app(environ, start_response)
            with self._changed:
                self._latest_served = max(self._latest_served, number)
                self._changed.notify_all()
            return body

        return counted

    @property
    def begun(self) -> int:
        with self._changed:
            return self._begun

    def wait_for_one_after(self, begun: int, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._latest_served > begun, timeout=timeout_s)


class MetricsServer:
    """A running ``/metrics`` endpoint on its own thread; ``close()`` stops it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, scrapes: _Scrapes | None = None) -> None:
        self._httpd = httpd
        self._thread = thread
        self._scrapes = scrapes or _Scrapes()
        # An AF_INET(6) server: its host is a str (typeshed allows the bytes of AF_UNIX).
        self.host: str = cast(str, httpd.server_address[0])
        self.port: int = httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def scrapes(self) -> int:
        """Scrapes begun so far."""
        return self._scrapes.begun

    def wait_for_scrape(self, timeout_s: float) -> bool:
        """Block until a scrape that began after this call has been served; False when none
        came within ``timeout_s`` seconds.

        A process that exits right after its last increment loses what Prometheus had not
        scraped yet (Prometheus once saw 401 sends of 403). One scrape begun after the last
        increment has read the final values; a scrape already in progress may not have.
        """
        return self._scrapes.wait_for_one_after(self._scrapes.begun, timeout_s)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_metrics_server(
    host: str = "127.0.0.1", port: int = 0, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serve ``registry`` over HTTP on a daemon thread; port 0 picks a free port.

    For processes without a web server of their own (``consentry worker``). The default host
    is loopback: exposing metrics beyond the machine is a deployment decision.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class: type[_ThreadingServer] = type("MetricsHTTPServer", (_ThreadingServer,), {"address_family": family})
    scrapes = _Scrapes()
    httpd = make_server(
        host, port, scrapes.wrap(make_wsgi_app(registry)), server_class, handler_class=_QuietHandler
    )
    # A short poll interval so close() returns promptly (the default is half a second).
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="metrics-server",
        daemon=True,
    )
    thread.start()
    return MetricsServer(httpd, thread, scrapes)


async def metrics_handler(request: web.Request) -> web.Response:
    """aiohttp handler for ``GET /metrics``."""
    registry = request.config_dict.get(REGISTRY_KEY, REGISTRY)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Collecting walks every series under the registry's lock; off the event loop, so a big
    # registry cannot stall requests in flight.
    body = await asyncio.get_running_loop().run_in_executor(None, encode, registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_metrics_route(
    app: web.Application, registry: CollectorRegistry | None = None, path: str = "/metrics"
) -> None:
    """Add ``GET path`` serving ``registry`` (default: the process-wide one) to ``app``."""
    if registry is not None:
        app[REGISTRY_KEY] = registry
    app.router.add_get(path, metrics_handler)
