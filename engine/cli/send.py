"""`consentry send individual`: a salesperson's one-to-one reply."""

from __future__ import annotations

import click

from engine.cli.common import Context, common_options, pass_context, refuse_public_defaults, run


@click.group()
def send() -> None:
    """One-to-one messages."""


@send.command("individual")
@click.option("--tenant", required=True)
@click.option("--contact", "external_id", required=True, help="The contact's external_id.")
@click.option("--channel", required=True, type=click.Choice(["email", "sms"]))
@click.option("--body", required=True, help="The message, as written (not a template).")
@click.option("--subject", help="Email subject.")
@click.option("--from", "sender", help="A person of the tenant's senders.people (their address, name and number), or an address or number (default: the tenant's sender).")
@click.option("--class", "class_code", help="Communication class (default: the tenant's first exempt class).")
@click.option("--smtp-url", metavar="URL")
@click.option("--twilio-url", metavar="URL")
@common_options
@pass_context
def individual(ctx: Context, tenant: str, external_id: str, channel: str, body: str, subject: str | None,
               sender: str | None, class_code: str | None, smtp_url: str | None, twilio_url: str | None) -> None:
    """Reach a customer who opted out of bulk marketing; never one who said STOP."""
    from engine.db.session import make_engine
    from engine.send.individual import send_individual

    settings = ctx.settings(smtp_url=smtp_url, twilio_url=twilio_url)
    refuse_public_defaults(settings, "send individual")

    async def _send():
        engine = make_engine(settings.database_url)
        try:
            return await send_individual(
                engine, settings, tenant, external_id, channel, body, subject, sender, class_code, clock=ctx.clock
            )
        finally:
            await engine.dispose()

    result = run(_send())
    segments = f", {result.segments} segment(s)" if result.segments else ""
    click.echo(f"sent to {result.external_id} at {result.address} on {result.channel} ({result.provider_id}{segments})")
