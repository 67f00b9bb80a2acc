"""`consentry capture smtp | sms | list`: run the built-in capture servers, read what they got.

The servers print one line saying where they listen and what file they append to, then
serve until Ctrl-C or SIGTERM, when they flush the store and exit 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import click

from engine.capture.store import DEFAULT_DIR, FILE_NAME, read_messages
from engine.cli.common import run

_store_option = click.option(
    "--store", "store", default=DEFAULT_DIR, show_default=True, metavar="DIR",
    type=click.Path(file_okay=False), help=f"Directory of {FILE_NAME}.",
)
_host_option = click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
_latency_option = click.option(
    "--latency-ms", default=0.0, type=click.FloatRange(min=0), show_default=True,
    help="Delay added to every reply.",
)
_fail_every_option = click.option(
    "--fail-every", "fail_every", default=0, type=click.IntRange(min=0), metavar="N",
    help="Fail every Nth message (SMTP: 451 at the end of DATA; SMS: --fail-status).",
)


@click.group()
def capture() -> None:
    """Built-in capture servers: see the SMTP and Twilio traffic of a campaign locally."""


@capture.command("smtp")
@_host_option
@click.option("--port", default=1025, type=click.IntRange(0, 65535), show_default=True,
              help="Port (0 picks a free one).")
@_store_option
@_latency_option
@click.option("--bounce", multiple=True, metavar="ADDR",
              help="Refuse this address (or @domain) at RCPT with 550 5.1.1 (repeatable).")
@click.option("--tempfail", multiple=True, metavar="ADDR",
              help="Refuse this address (or @domain) at RCPT with 451 (repeatable).")
@_fail_every_option
@click.option("--refuse", is_flag=True, help="Close every connection at once: a relay that is down.")
def capture_smtp(host: str, port: int, store: str, latency_ms: float, bounce: tuple[str, ...],
                 tempfail: tuple[str, ...], fail_every: int, refuse: bool) -> None:
    """An SMTP server that stores every message it accepts."""
    from engine.capture.smtp import SmtpCaptureServer

    server = SmtpCaptureServer(
        host, port, store, latency_ms=latency_ms, bounce=bounce, tempfail=tempfail,
        fail_every_n=fail_every, refuse=refuse,
    )

    def banner() -> str:
        return f"SMTP capture server listening on smtp://{host}:{server.port}, storing to {server.store.path}"

    _serve(server.start, server.stop, banner)


@capture.command("sms")
@_host_option
@click.option("--port", default=8025, type=click.IntRange(0, 65535), show_default=True,
              help="Port (0 picks a free one).")
@_store_option
@_latency_option
@click.option("--unsubscribed", multiple=True, metavar="NUM",
              help="Answer 21610 (unsubscribed recipient) for this number (repeatable).")
@click.option("--invalid", multiple=True, metavar="NUM",
              help="Answer 21211 (invalid number) for this number (repeatable).")
@click.option("--not-mobile", "not_mobile", multiple=True, metavar="NUM",
              help="Answer 21614 (not a mobile number) for this number (repeatable).")
@click.option("--undelivered", multiple=True, metavar="NUM",
              help="Accept texts to this number, then report them undelivered, error 30003 (repeatable).")
@_fail_every_option
@click.option("--fail-status", default=503, type=click.Choice(["429", "500", "503"]),
              show_default=True, help="HTTP status of the --fail-every failures.")
@click.option("--auth-token", metavar="T",
              help="Auth Token that signs webhooks (default: $TWILIO_AUTH_TOKEN or the local default).")
def capture_sms(host: str, port: int, store: str, latency_ms: float, unsubscribed: tuple[str, ...],
                invalid: tuple[str, ...], not_mobile: tuple[str, ...], undelivered: tuple[str, ...], fail_every: int,
                fail_status: str, auth_token: str | None) -> None:
    """A Twilio-compatible Messages API that stores every text it accepts."""
    from engine.capture.sms import SmsCaptureServer
    from engine.config import Settings

    settings = Settings.from_environ()
    server = SmsCaptureServer(
        host, port, store, latency_ms=latency_ms, unsubscribed=unsubscribed, invalid=invalid,
        not_mobile=not_mobile, undelivered=undelivered, fail_every_n=fail_every, fail_status=int(fail_status),
        auth_token=auth_token or settings.twilio_auth_token, account_sid=settings.twilio_account_sid,
    )

    def banner() -> str:
        return (f"SMS capture server (Twilio API) listening on http://{host}:{server.port}/, "
                f"storing to {server.store.path}")

    _serve(server.start, server.stop, banner)


@capture.command("list")
@_store_option
@click.option("--channel", type=click.Choice(["email", "sms"]), help="Only this channel.")
@click.option("--limit", default=0, type=click.IntRange(min=0), metavar="N",
              help="Only the last N messages (default: all).")
def capture_list(store: str, channel: str | None, limit: int) -> None:
    """Print the captured messages as a table, oldest first."""
    from rich.console import Console
    from rich.table import Table

    messages = read_messages(store, limit or None)
    if channel:
        messages = [message for message in messages if message.get("channel") == channel]
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped or captured: do not squeeze to 80 columns
    if not messages:
        console.print(f"no messages captured in {store}/{FILE_NAME}")
        return
    table = Table(title=f"{len(messages)} messages in {store}/{FILE_NAME}", title_justify="left")
    for name, options in (("received (UTC)", {"no_wrap": True}), ("channel", {}), ("from", {}),
                          ("to", {}), ("subject / body", {"overflow": "fold"}), ("id", {"no_wrap": True})):
        table.add_column(name, **options)
    for message in messages:
        table.add_row(
            str(message.get("received_at", ""))[:19].replace("T", " "),
            str(message.get("channel", "")),
            str(message.get("from", "")),
            str(message.get("to", "")),
            _summary(message),
            str(message.get("message_id") or message.get("sid") or ""),
        )
    console.print(table)


def _summary(message: dict[str, Any], width: int = 80) -> str:
    if message.get("channel") == "email":
        text = str(message.get("subject", ""))
    else:
        text = str(message.get("body", ""))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _serve(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[None]],
           banner: Callable[[], str]) -> None:
    """Start a server, print where it listens, serve until SIGINT/SIGTERM, stop cleanly."""

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await start()
        try:
            click.echo(banner())
            await stopping.wait()
        finally:
            await stop()
        click.echo("stopped", err=True)

    run(main())
