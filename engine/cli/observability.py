"""What the sending commands share to be observed: the per-batch JSON log, and /metrics for a
process that lives for one campaign (docs/operations.md, "Metrics" and "Logs").

A `campaign send` or `resume` ends when its campaign does. Prometheus reads a process only
when it scrapes it, so one that exits right after its last batch takes its last counts with
it (Prometheus saw 401 sends of 403). With `--metrics-port`, the command therefore waits
for a scrape before it sends (its series exist at 0 first, so `increase()` counts every
send) and for one after its last count, each wait at most `--metrics-linger` seconds.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from engine.config import Settings

__all__ = ["install_batch_log", "linger_options", "metrics_for_one_run"]

# Prometheus's default scrape interval is 1 min, ours (metrics/prometheus.yml) 15 s: two of
# ours, so one scrape is sure to come while the port is still open.
DEFAULT_LINGER_S = 30.0

_linger_options = [
    click.option("--metrics-host", default="127.0.0.1", show_default=True,
                 help="Address of the /metrics listener of --metrics-port."),
    click.option("--metrics-port", type=click.IntRange(0, 65535),
                 help="Serve Prometheus metrics on this port while sending, and wait for a scrape before the first "
                      "send and after the last (docs/operations.md)."),
    click.option("--metrics-linger", default=DEFAULT_LINGER_S, show_default=True, type=click.FloatRange(0),
                 metavar="SECONDS", help="The longest each wait for a scrape lasts."),
]


def linger_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_linger_options):
        function = option(function)
    return function


@contextmanager
def metrics_for_one_run(
    host: str, port: int | None, linger_s: float, prime: tuple[str, tuple[str, ...]] | None = None, *,
    label: str = "consentry",
) -> Iterator[None]:
    """Serve /metrics around one run; `prime` (tenant, channels) creates the delivery series
    at 0 and waits for a first scrape before the run starts. No port: nothing at all."""
    if port is None:
        yield
        return
    from metrics import default_instruments, start_metrics_server

    server = start_metrics_server(host, port)
    click.echo(f"{label}: metrics on {server.url}", err=True)
    try:
        if prime is not None:
            tenant, channels = prime
            for channel in channels:
                default_instruments().prime_deliveries(tenant, channel)
            if linger_s and not server.wait_for_scrape(linger_s):
                click.echo(f"{label}: no scrape of {server.url} within {linger_s:g} s; sending anyway", err=True)
        yield
    finally:
        # After an error too: what was sent before it still counts.
        if linger_s and not server.wait_for_scrape(linger_s):
            click.echo(
                f"{label}: no scrape of {server.url} within {linger_s:g} s after the last count: "
                "Prometheus misses this run's last counts (is the port in its scrape configuration?)",
                err=True,
            )
        server.close()


class _Destination:
    """Marks the handlers this module installed, so a second command in one process (tests,
    the demo) replaces them instead of writing every line twice."""


def log_to_stderr() -> None:
    """INFO and above, as text on stderr (the container log): what a long-running command
    (serve, worker, the inbound and webhook servers) did and why; without a handler only
    warnings would show, unformatted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def install_batch_log(settings: Settings) -> None:
    """Route the per-batch log (engine/send/batch_log.py) where CONSENTRY_BATCH_LOG says:
    one JSON object per line (python-json-logger), not through the root logger's text."""
    from pythonjsonlogger.json import JsonFormatter

    from engine.send.batch_log import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(getattr(h, "consentry", None), _Destination)]:
        logger.removeHandler(old)
        old.close()
    logger.propagate = False
    if settings.batch_log.lower() == "off":
        logger.setLevel(logging.WARNING)
        return
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if settings.batch_log == "-" else logging.FileHandler(settings.batch_log)
    )
    # `time` is when the line was written (logging's own stamp, UTC): metadata of the log,
    # not a fact the engine decides anything on.
    formatter = JsonFormatter("%(message)s", timestamp="time")
    handler.setFormatter(formatter)
    handler.consentry = _Destination()  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
