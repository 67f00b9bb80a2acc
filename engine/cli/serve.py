"""`consentry serve` (the HTTP service) and `consentry keys ...` (its API keys)."""

from __future__ import annotations

import click

from engine.cli.common import (
    Context,
    common_options,
    pass_context,
    refuse_public_defaults,
    run,
    run_in_transaction,
)
from engine.cli.observability import install_batch_log, log_to_stderr

__all__ = ["keys", "serve"]

ROLES = ("admin", "manager", "marketer", "sales", "viewer")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of the /metrics listener (it names every tenant: keep it private).")
@click.option("--metrics-port", default=9109, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the /metrics listener (0: any free one).")
@common_options
@pass_context
def serve(ctx: Context, host: str, port: int, metrics_host: str, metrics_port: int) -> None:
    """Serve unsubscribe links, the preference centre, Twilio webhooks and the API; /metrics
    on a listener of its own.

    Stops cleanly on SIGTERM or Ctrl-C. Links and webhook signatures use
    $CONSENTRY_PUBLIC_URL, which must be the URL this service is reached at from outside.
    """

    from engine.api.server import Listening, serve_until_stopped

    settings = ctx.settings()
    refuse_public_defaults(settings, "serve", host)
    log_to_stderr()
    install_batch_log(settings)  # campaigns launched over the API may run in this process

    def ready(listening: Listening) -> None:
        click.echo(f"consentry serve: listening on {', '.join(listening.urls)} (public URL {settings.public_url})")
        click.echo(f"consentry serve: metrics on {listening.metrics_url}")
        click.echo(
            f"consentry serve: at most {listening.max_connections:,} connections (open-file limit "
            f"{listening.open_file_limit:,}); headers within {settings.http_header_timeout_s:g} s, "
            f"bodies within {settings.http_body_timeout_s:g} s"
        )
        click.echo("press Ctrl-C to stop")

    run(serve_until_stopped(settings, host, port, ready, clock=ctx.clock, metrics=(metrics_host, metrics_port)))
    click.echo("consentry serve: stopped")


@click.group("keys")
def keys() -> None:
    """API keys of a tenant (Authorization: Bearer KEY)."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", required=True, help="Who or what uses the key (shown in `keys list`).")
@common_options
@pass_context
def keys_create(ctx: Context, tenant: str, role: str, name: str) -> None:
    """Create a key; it is printed once and never stored (only its SHA-256 is)."""
    from engine.api.keys import create_api_key

    record, key = run_in_transaction(ctx, lambda conn: create_api_key(conn, tenant, role, name, ctx.clock))
    click.echo(key)
    click.echo(f"key {record.id} for tenant {record.tenant}, role {record.role}: store it now, it is not shown again", err=True)


@keys.command("list")
@click.option("--tenant", required=True)
@common_options
@pass_context
def keys_list(ctx: Context, tenant: str) -> None:
    """The tenant's keys (never the keys themselves)."""
    from engine.api.keys import list_api_keys
    from engine.timeutil import iso_z

    for record in run_in_transaction(ctx, lambda conn: list_api_keys(conn, tenant)):
        state = f"revoked {iso_z(record.revoked_at_us)}" if record.revoked_at_us else "active"
        click.echo(f"{record.id}\t{record.role}\t{record.name}\tcreated {iso_z(record.created_at_us)}\t{state}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.option("--tenant", required=True)
@common_options
@pass_context
def keys_revoke(ctx: Context, key_id: int, tenant: str) -> None:
    """Revoke a key by its id (see `keys list`): it stops working at once."""
    from engine.api.keys import revoke_api_key

    record = run_in_transaction(ctx, lambda conn: revoke_api_key(conn, tenant, key_id, ctx.clock))
    click.echo(f"key {record.id} ({record.name}) of tenant {record.tenant} revoked")
