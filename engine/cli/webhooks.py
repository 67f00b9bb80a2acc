"""`consentry webhooks ...`: a tenant's outbound webhook endpoints, and the dispatcher.

    consentry webhooks add URL --tenant T --events consent.revoke,consent.block [--description D]
    consentry webhooks list --tenant T
    consentry webhooks remove ID --tenant T
    consentry webhooks deliveries ID --tenant T [--limit N]
    consentry webhooks dispatch [--until-idle]

`add` prints the signing secret alone on standard output (like `keys create`): it is not
shown again. `dispatch` runs a dispatcher until SIGTERM / Ctrl-C (`serve` runs one too;
any number may run against one database), or with `--until-idle` until nothing is due.
"""

from __future__ import annotations

import click

from engine.cli.common import Context, common_options, pass_context, run
from engine.cli.observability import log_to_stderr

__all__ = ["webhooks"]


@click.group("webhooks")
def webhooks() -> None:
    """Outbound webhooks: endpoints that receive signed consent and campaign events."""


@webhooks.command("add")
@click.argument("url")
@click.option("--tenant", required=True)
@click.option("--events", "events", required=True, metavar="TYPES",
              help="Comma-separated event types, e.g. consent.revoke,consent.block,campaign.finished.")
@click.option("--description", default=None)
@common_options
@pass_context
def add(ctx: Context, url: str, tenant: str, events: str, description: str | None) -> None:
    """Register URL for the tenant; prints its signing secret once."""
    from engine.webhooks import create_endpoint

    types = [name.strip() for name in events.split(",") if name.strip()]

    async def work(conn, tenant_id):  # noqa: ANN001, ANN202
        return await create_endpoint(conn, tenant_id, url, types, description, ctx.clock())

    record, secret = run(_for_tenant(ctx, tenant, work))
    click.echo(secret)
    click.echo(f"webhook endpoint {record.id} for tenant {tenant}: {record.url} ({', '.join(record.event_types)}); "
               "store the secret now, it is not shown again", err=True)


@webhooks.command("list")
@click.option("--tenant", required=True)
@common_options
@pass_context
def list_(ctx: Context, tenant: str) -> None:
    """The tenant's endpoints (never their secrets)."""
    from engine.timeutil import iso_z
    from engine.webhooks import list_endpoints

    for record in run(_for_tenant(ctx, tenant, list_endpoints)):
        click.echo(f"{record.id}\t{record.url}\t{','.join(record.event_types)}\tcreated {iso_z(record.created_at_us)}"
                   + (f"\t{record.description}" if record.description else ""))


@webhooks.command("remove")
@click.argument("endpoint_id", type=int)
@click.option("--tenant", required=True)
@common_options
@pass_context
def remove(ctx: Context, endpoint_id: int, tenant: str) -> None:
    """Delete an endpoint: nothing more is sent to it; what it had pending is cancelled."""
    from engine.webhooks import delete_endpoint

    record = run(_for_tenant(ctx, tenant, lambda conn, tenant_id: delete_endpoint(conn, tenant_id, endpoint_id, ctx.clock())))
    click.echo(f"webhook endpoint {record.id} ({record.url}) of tenant {tenant} removed")


@webhooks.command("deliveries")
@click.argument("endpoint_id", type=int)
@click.option("--tenant", required=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@common_options
@pass_context
def deliveries(ctx: Context, endpoint_id: int, tenant: str, limit: int) -> None:
    """An endpoint's latest deliveries: state, attempts, last answer, next retry."""
    from engine.timeutil import iso_z
    from engine.webhooks import endpoint_deliveries

    records, counts = run(_for_tenant(ctx, tenant, lambda conn, tenant_id: endpoint_deliveries(
        conn, tenant_id, endpoint_id, limit=limit)))
    click.echo(" ".join(f"{state}={n}" for state, n in counts.items()))
    for r in records:
        answer = r.last_error or (f"HTTP {r.last_status}" if r.last_status else "")
        retry = f"next {iso_z(r.next_attempt_at_us)}" if r.next_attempt_at_us else ""
        click.echo(f"{r.id}\t{r.event_id}\t{r.event_type}\t{r.state}\tattempts {r.attempts}\t{answer}\t{retry}".rstrip())


@webhooks.command("dispatch")
@click.option("--until-idle", is_flag=True, help="Stop when nothing is due (for cron) instead of running on.")
@click.option("--poll", "poll_s", default=1.0, show_default=True, type=click.FloatRange(0.01, 60),
              help="Seconds between looks at the outbox when nothing is due.")
@common_options
@pass_context
def dispatch(ctx: Context, until_idle: bool, poll_s: float) -> None:
    """POST due webhook events, with retries, until stopped (SIGTERM, Ctrl-C)."""
    import asyncio
    import signal

    from engine.db.session import make_engine
    from engine.webhooks.dispatcher import Dispatcher, DispatchOptions
    from metrics import default_instruments

    settings = ctx.settings()
    log_to_stderr()

    async def go() -> int:
        engine = make_engine(settings.database_url)
        dispatcher = Dispatcher(engine, ctx.clock, DispatchOptions.from_settings(settings, poll_s), default_instruments())
        try:
            if until_idle:
                return await dispatcher.run_until_idle()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            click.echo("consentry webhooks dispatch: running (Ctrl-C to stop)", err=True)
            await dispatcher.run(stop)
            return 0
        finally:
            await engine.dispose()

    made = run(go())
    if until_idle:
        click.echo(f"{made} webhook attempts made; nothing is due")


async def _for_tenant(ctx: Context, tenant_code: str, work):  # noqa: ANN001, ANN202
    from engine.db.session import make_engine
    from engine.db.tenants import load_tenant

    engine = make_engine(ctx.settings().database_url)
    try:
        async with engine.begin() as conn:
            tenant = await load_tenant(conn, tenant_code)
            return await work(conn, tenant.id)
    finally:
        await engine.dispose()
