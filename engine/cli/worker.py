"""`consentry worker`: run batch jobs of the arq backend from Redis."""

from __future__ import annotations

import asyncio

import click

from engine.cli.common import Context, common_options, pass_context, refuse_public_defaults, run
from engine.cli.observability import install_batch_log, log_to_stderr


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty (tests, cron).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", default=9108, show_default=True, type=click.IntRange(0, 65535), help="Prometheus /metrics (0: a free port).")
@click.option("--metrics-linger", default=0.0, show_default=True, type=click.FloatRange(0), metavar="SECONDS",
              help="On the way out (SIGTERM, or --burst with the queue empty), wait at most this long for a last "
                   "scrape, so Prometheus sees the last batches' counts (docs/operations.md).")
@common_options
@pass_context
def worker(ctx: Context, burst: bool, metrics_host: str, metrics_port: int, metrics_linger: float) -> None:
    """Send campaign batches queued on Redis ($CONSENTRY_REDIS_URL) by `campaign send --backend arq`."""
    from engine.backends.arq_backend import run_worker
    from metrics import start_metrics_server

    settings = ctx.settings()
    refuse_public_defaults(settings, "worker")
    log_to_stderr()  # its jobs, a pause it stopped on, a retry it scheduled
    install_batch_log(settings)
    server = start_metrics_server(metrics_host, metrics_port)
    click.echo(f"consentry worker: metrics on {server.url}", err=True)
    try:
        run(run_worker(settings, burst=burst))
    except asyncio.CancelledError:
        # arq stops on SIGTERM / SIGINT by cancelling its main task: a requested stop, not
        # a failure (its running jobs are retried by another worker).
        click.echo("consentry worker: stopped", err=True)
    finally:
        if metrics_linger and not server.wait_for_scrape(metrics_linger):
            click.echo(f"consentry worker: no scrape of {server.url} within {metrics_linger:g} s of stopping", err=True)
        server.close()
