"""`consentry inbound smtp`: the listener for unsubscribe mails, bounces and complaints."""

from __future__ import annotations

import click

from engine.cli.common import Context, common_options, pass_context, run
from engine.cli.observability import log_to_stderr

__all__ = ["inbound"]


@click.group("inbound")
def inbound() -> None:
    """Mail that comes back: unsubscribe requests, bounces (DSN), complaints (ARF)."""


@inbound.command("smtp")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=2525, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus /metrics on this port (0: a free one).")
@common_options
@pass_context
def smtp(ctx: Context, host: str, port: int, metrics_host: str, metrics_port: int | None) -> None:
    """Receive mail for the tenants' return-path and unsubscribe addresses (docs/inbound-mail.md).

    Records each unsubscribe, hard bounce and complaint in the consent ledger before it
    answers 250; stops cleanly on SIGTERM or Ctrl-C.
    """

    from engine.inbound import serve_inbound_until_stopped

    settings = ctx.settings()
    unsafe = [name for name in settings.unsafe_off_loopback(host) if name == "CONSENTRY_SECRET"]
    if unsafe:
        from engine.errors import InputError

        # The tokens it trusts are signed with the secret: with the public default anyone
        # could forge a bounce that blocks an address.
        raise InputError(f"inbound smtp on {host} is reachable from other machines, but CONSENTRY_SECRET still has "
                         "its public default: set it", field="environment")
    log_to_stderr()
    if metrics_port is not None:
        from metrics import start_metrics_server

        server = start_metrics_server(metrics_host, metrics_port)
        click.echo(f"consentry inbound smtp: metrics on {server.url}", err=True)

    def ready(addresses: list[str]) -> None:
        click.echo(f"consentry inbound smtp: listening on {', '.join(addresses)}", err=False)
        click.echo("press Ctrl-C to stop")

    run(serve_inbound_until_stopped(settings, host, port, ready, clock=ctx.clock))
    click.echo("consentry inbound smtp: stopped")
