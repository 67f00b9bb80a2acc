"""`consentry worker`: run batch jobs of the arq backend from Redis."""

from __future__ import annotations

import click

from engine.cli_common import Context, common_options, pass_context


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty (tests, cron).")
@common_options
@pass_context
def worker(ctx: Context, burst: bool) -> None:
    """Send campaign batches queued on Redis ($CONSENTRY_REDIS_URL) by `campaign send --backend arq`."""
    from engine.backends.arq_backend import run_worker_forever

    run_worker_forever(ctx.settings(), burst=burst)
