"""`consentry worker`: run batch jobs of the arq backend from Redis."""

from __future__ import annotations

import click

from engine.cli.common import Context, common_options, pass_context, refuse_public_defaults


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty (tests, cron).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", default=9108, show_default=True, type=click.IntRange(0, 65535), help="Prometheus /metrics (0: a free port).")
@common_options
@pass_context
def worker(ctx: Context, burst: bool, metrics_host: str, metrics_port: int) -> None:
    """Send campaign batches queued on Redis ($CONSENTRY_REDIS_URL) by `campaign send --backend arq`."""
    from engine.backends.arq_backend import run_worker_forever
    from metrics import start_metrics_server

    settings = ctx.settings()
    refuse_public_defaults(settings, "worker")
    server = start_metrics_server(metrics_host, metrics_port)
    click.echo(f"consentry worker: metrics on {server.url}", err=True)

    run_worker_forever(settings, burst=burst)
