"""`consentry campaign ...` and `consentry explain`."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext

import click

from engine.cli.common import Context, common_options, pass_context, refuse_public_defaults, run
from engine.cli.observability import install_batch_log, linger_options, metrics_for_one_run
from engine.clock import Clock, shifted_clock
from engine.errors import ConsentryError, InputError
from engine.timeutil import iso_z, parse_instant


def parse_at(value: str | None, clock: Clock) -> int:
    """`--at` as microseconds; absent, the clock's now (check and explain replay any instant)."""
    if value is None:
        return clock()
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO 8601 instant with an offset ({exc})", field="--at") from None


def send_clock(value: str | None, clock: Clock) -> Clock:
    """The clock a send runs on: now, or a later `--at` advancing at the clock's pace.

    Never earlier than now: a send must honour every revocation recorded up to the moment
    it goes, and a past instant would hide the latest ones (FORMATS.md, "Sending").
    """
    if value is None:
        return clock
    at_us = parse_at(value, clock)
    now = clock()
    if at_us < now:
        raise InputError(
            f"{value} is in the past (now is {iso_z(now)}); a send gates at now or later, so that every "
            "revocation recorded until it goes is honoured (replay the past with `campaign check --at`)",
            field="--at",
        )
    return shifted_clock(at_us, clock)


def progress_bar(total_hint: int | None, label: str):
    """A rich progress bar on a terminal; nothing when stderr is not a TTY."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    )


@click.group()
def campaign() -> None:
    """Check, send and follow campaigns."""


@campaign.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--at", "at", metavar="ISO8601", help="Gate as of this instant (default: now).")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write one row per recipient (CSV).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@common_options
@pass_context
def campaign_check(ctx: Context, path: str, at: str | None, out: str | None, batch_size: int, as_json: bool) -> None:
    """Dry run: who would be reached, and why not the others. Records nothing."""
    from campaigns.definition import load_campaign
    from engine.db.session import make_engine
    from engine.gate.check import check_campaign
    from engine.send.campaign_inputs import tenant_for

    definition = load_campaign(path)
    at_us = parse_at(at, ctx.clock)

    async def _check():
        from engine.send.content import validate_templates

        engine = make_engine(ctx.settings().database_url)
        try:
            validate_templates(definition)
            tenant = await tenant_for(engine, definition)
            async with engine.connect() as conn:
                total = await _audience_size(conn, tenant.id) if sys.stderr.isatty() else None
            with open(out, "w", newline="", encoding="utf-8") if out else nullcontext(None) as handle, progress_bar(total, "checking") as bar:
                task = bar.add_task("check", total=total) if bar is not None else None
                advance = (lambda n: bar.advance(task, n)) if bar is not None else None
                return await check_campaign(engine, definition, tenant, at_us, batch_size=batch_size, out=handle, progress=advance)
        finally:
            await engine.dispose()

    report = run(_check())
    if as_json:
        click.echo(json.dumps({"campaign": definition.code, "at": iso_z(at_us), **report.as_dict()}, indent=2))
        return
    _print_report(definition.code, at_us, report, out)


async def _audience_size(conn, tenant_id: int) -> int:  # noqa: ANN001
    from sqlalchemy import func, select

    from engine.db.models import Contact

    return (await conn.execute(select(func.count()).where(Contact.tenant_id == tenant_id))).scalar_one()


def _print_report(code: str, at_us: int, report, out: str | None) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"campaign {code} at {iso_z(at_us)}")
    table.add_column("decision")
    table.add_column("reason")
    table.add_column("recipients", justify="right")
    table.add_column("%", justify="right")
    for decision, reason, count, percent in report.rows():
        table.add_row(decision, reason or "-", f"{count:,}", f"{percent:.1f}")
    table.add_row("total", "", f"{report.total:,}", "100.0" if report.total else "0.0", style="bold")
    console = Console(width=100)
    console.print(table)
    rate = report.total / report.elapsed_s if report.elapsed_s else 0
    console.print(f"checked {report.total:,} recipients in {report.elapsed_s:.2f} s ({rate:,.0f}/s)")
    if out:
        console.print(f"decisions written to {out}")


@click.command("explain")
@click.option("--tenant", required=True)
@click.option("--contact", "external_id", required=True, help="The contact's external_id.")
@click.option("--channel", required=True, type=click.Choice(["email", "sms", "voice"]))
@click.option("--class", "class_code", required=True)
@click.option("--party", default="first", show_default=True, type=click.Choice(["first", "third"]))
@click.option("--kind", default="bulk", show_default=True, type=click.Choice(["bulk", "individual"]))
@click.option("--at", "at", metavar="ISO8601", help="As of this instant (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@common_options
@pass_context
def explain(ctx: Context, tenant: str, external_id: str, channel: str, class_code: str, party: str, kind: str, at: str | None, as_json: bool) -> None:
    """Why a contact would or would not get a message: every rule, its verdict, its evidence."""
    from engine.db.session import make_engine
    from engine.gate.explain import explain_contact

    at_us = parse_at(at, ctx.clock)

    async def _explain():
        engine = make_engine(ctx.settings().database_url)
        try:
            return await explain_contact(engine, tenant, external_id, channel, class_code, party, kind, at_us)
        finally:
            await engine.dispose()

    result = run(_explain())
    body = result.as_dict()
    if as_json:
        click.echo(json.dumps(body, indent=2, default=str))
        return
    _print_explanation(body)


def _print_explanation(body: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    decision = body.get("decision", {})
    headline = decision.get("decision", "?").upper()
    if decision.get("reason"):
        headline += f" ({decision['reason']})"
    if decision.get("defer_until"):
        headline += f" until {decision['defer_until']}"
    console.print(f"[bold]{headline}[/bold]  contact {body['contact']} on {body['channel']} "
                  f"({body.get('address') or 'no address'}) at {body['at']}")
    table = Table()
    for column in ("#", "rule", "verdict", "detail", "evidence"):
        table.add_column(column)
    for rule in body.get("rules", []):
        evidence = "; ".join(
            f"#{e['id']} {e['action']} {e['channel'] or ''} {e['class'] or ''} {e['occurred_at']} via {e['method']}".replace("  ", " ")
            for e in rule.get("events", [])
        )
        style = {"fail": "red", "pass": "green"}.get(rule["verdict"], "dim")
        table.add_row(str(rule["number"]), rule["code"], f"[{style}]{rule['verdict']}[/{style}]", rule.get("detail", ""), evidence)
    console.print(table)


def _send_options(settings, batch_size: int, concurrency: int):  # noqa: ANN001, ANN202
    from engine.send.pipeline import SendOptions

    return SendOptions(
        batch_size=batch_size,
        concurrency=concurrency,
        max_attempts=settings.retry_attempts,
        retry_base_s=settings.retry_base_s,
        claim_ttl_s=settings.claim_ttl_s,
        policy_stop_after=settings.smtp_policy_stop_after,
    )


def _transport_overrides(smtp_url: str | None, twilio_url: str | None) -> dict:
    return {"smtp_url": smtp_url, "twilio_url": twilio_url}


_transport_options = [
    click.option("--smtp-url", metavar="URL", help="SMTP relay (default $CONSENTRY_SMTP_URL or the capture server)."),
    click.option("--twilio-url", metavar="URL", help="Twilio API base URL (default $CONSENTRY_TWILIO_URL or the capture server)."),
    click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10000)),
    click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 512), help="Messages in flight."),
]


def transport_options(function):  # noqa: ANN001, ANN201
    for option in reversed(_transport_options):
        function = option(function)
    return linger_options(function)


@campaign.command("send")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--at", "at", metavar="ISO8601", help="Gate from this instant on (now or later; default now).")
@click.option("--backend", type=click.Choice(["inline", "arq"]), default="inline", show_default=True)
@click.option("--dry-run", is_flag=True, help="Gate and render a sample without sending or recording anything.")
@transport_options
@common_options
@pass_context
def campaign_send(ctx: Context, path: str, at: str | None, backend: str, dry_run: bool, smtp_url, twilio_url, batch_size: int, concurrency: int,  # noqa: ANN001
                  metrics_host: str, metrics_port: int | None, metrics_linger: float) -> None:
    """Launch (or continue) a campaign and send it; safe to run again after a crash."""
    from campaigns.definition import load_campaign

    definition = load_campaign(path)
    settings = ctx.settings(**_transport_overrides(smtp_url, twilio_url))
    if dry_run:
        ctx_click = click.get_current_context()
        ctx_click.invoke(campaign_check, path=path, at=at, out=None, batch_size=batch_size, as_json=False)
        return
    refuse_public_defaults(settings, "campaign send")
    install_batch_log(settings)
    clock = send_clock(at, ctx.clock)
    options = _send_options(settings, batch_size, concurrency)

    async def _send():
        from engine.db.session import sending_engine
        from engine.send.runner import check_transport, launch_campaign, run_campaign

        check_transport(definition.channel, settings)  # a bad CA file: refused before launch
        engine = sending_engine(settings.database_url, settings.claim_ttl_s)
        try:
            record, tenant = await launch_campaign(engine, definition, clock)
            if backend == "arq":
                from engine.backends.arq_backend import run_on_arq

                return await run_on_arq(settings, record, tenant, options, clock)
            return await run_campaign(engine, record, tenant, settings, options, clock=clock, lease_clock=ctx.clock)
        finally:
            await engine.dispose()

    with metrics_for_one_run(metrics_host, metrics_port, metrics_linger, (definition.tenant, (definition.channel,)),
                             label="campaign send"):
        result = run(_send())
    _finish(result)


@campaign.command("resume")
@click.argument("code")
@click.option("--tenant", required=True)
@transport_options
@common_options
@pass_context
def campaign_resume(ctx: Context, code: str, tenant: str, smtp_url, twilio_url, batch_size: int, concurrency: int,  # noqa: ANN001
                    metrics_host: str, metrics_port: int | None, metrics_linger: float) -> None:
    """Continue a launched campaign: unsent, in-doubt and now-due deferred recipients."""
    settings = ctx.settings(**_transport_overrides(smtp_url, twilio_url))
    refuse_public_defaults(settings, "campaign resume")
    install_batch_log(settings)
    options = _send_options(settings, batch_size, concurrency)

    async def _resume():
        from engine.db.session import sending_engine
        from engine.send.runner import resume_target, run_campaign

        engine = sending_engine(settings.database_url, settings.claim_ttl_s)
        try:
            record, tenant_record = await resume_target(engine, tenant, code)
            # An operator resuming lifts a pause (not a cancel: that is final).
            return await run_campaign(engine, record, tenant_record, settings, options, clock=ctx.clock, lift_pause=True)
        finally:
            await engine.dispose()

    # The campaign's channel is known once it is loaded: prime both a resume may send on.
    with metrics_for_one_run(metrics_host, metrics_port, metrics_linger, (tenant, ("email", "sms")),
                             label="campaign resume"):
        result = run(_resume())
    _finish(result)


def _finish(result) -> None:  # noqa: ANN001
    from engine.db.states import Outcome, outcome_of

    summary = result.summary
    outcomes = result.outcomes
    parts = ", ".join(f"{_OUTCOME_LABEL[o]} {outcomes[o]:,}" for o in Outcome if outcomes[o] or o in _ALWAYS_SHOWN)
    click.echo(f"campaign {result.record.code}: {result.status}; {result.total:,} recipients: {parts}")
    click.echo(
        f"  this run sent {summary.sent:,}, failed {summary.failed:,}, left {summary.retry_later:,} for later"
        + (f", reconciled {summary.reconciled:,} in doubt" if summary.reconciled else "")
    )
    reasons: dict[tuple[str, str], int] = {}
    for state, purpose, _decision, reason, n in result.counts:
        if outcome_of(state, purpose) not in (Outcome.SENT, Outcome.OPT_IN_REQUEST):
            reasons[(str(state), reason)] = reasons.get((str(state), reason), 0) + n
    for (state, reason), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {state:<10} {reason or '-':<22} {n:>9,}")
    if result.held_elsewhere:
        click.echo(f"  {result.held_elsewhere:,} recipients are being sent right now by another runner of this campaign")
    if str(result.status) in ("paused", "cancelled"):
        # Exit 3, not 1: a cron job re-running `resume` on exit 1 would lift the pause.
        tail = (f"; `consentry campaign resume {result.record.code} --tenant {result.record.definition.tenant}` "
                "(or POST .../resume) continues it" if str(result.status) == "paused" else "; nothing more is sent")
        raise CampaignStopped(f"campaign {result.status} by an operator: this runner sent nothing more{tail}")
    if summary.lost_claims:
        raise ConsentryError(
            "this runner stopped: its claims lapsed (the process was paused, or the database was unreachable, "
            "for longer than the claim time); another runner may have taken over. Run "
            f"`consentry campaign resume {result.record.code} --tenant {result.record.definition.tenant}` to finish"
        )
    if summary.fatal:
        if result.record.definition.channel == "email":
            hint = _STOP_HINT.get(str(summary.stop_cause), "fix the relay or its settings")
        else:
            hint = "fix the Twilio account, its credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) or the sender number"
        raise CampaignStopped(
            f"campaign stopped: {summary.fatal}\n"
            f"{result.unfinished:,} recipients left pending; {hint}, then run "
            f"`consentry campaign resume {result.record.code} --tenant {result.record.definition.tenant}`"
        )
    if result.unfinished > result.held_elsewhere:
        error = ConsentryError(
            f"{result.unfinished - result.held_elsewhere:,} deliveries are not sent yet (transport errors); "
            f"run `consentry campaign resume {result.record.code} --tenant {result.record.definition.tenant}`"
        )
        raise error


class CampaignStopped(ConsentryError):
    """The relay refused us, not the recipients: nothing more goes until a person fixes the
    cause. Its own exit code, so that a cron job re-running `resume` on exit 1 (transient
    errors) does not hammer a relay that will refuse it the same way (docs/sending.md)."""

    exit_code = 3


# By engine.transports.errors.StopCause (a str enum; not imported here: it would load every
# transport for `campaign status`).
_STOP_HINT = {
    "certificate": "trust the relay's CA with CONSENTRY_SMTP_CA_FILE or CONSENTRY_SMTP_CA_DIR "
                   "(or fix the relay's certificate, or the host name in CONSENTRY_SMTP_URL)",
    "tls": "check the TLS mode in CONSENTRY_SMTP_URL (starttls=true, smtps://) against the relay's",
    "credentials": "fix the user and password in CONSENTRY_SMTP_URL (or the relay's account)",
    "sender": "use a sender the relay accepts for this account",
    "policy": "have the relay accept these recipients from us (authenticate, or fix its access rules); "
              "CONSENTRY_SMTP_POLICY_STOP_AFTER sets how many in a row stop a campaign",
}

_OUTCOME_LABEL = {
    "sent": "sent", "opt_in_request": "opt-in requests sent", "suppressed": "suppressed", "deferred": "deferred",
    "failed": "failed", "pending": "pending", "sending": "sending",
}
_ALWAYS_SHOWN = frozenset({"sent", "suppressed"})


@campaign.command("status")
@click.argument("code")
@click.option("--tenant", required=True)
@click.option("--json", "as_json", is_flag=True)
@common_options
@pass_context
def campaign_status(ctx: Context, code: str, tenant: str, as_json: bool) -> None:
    """Progress and counts per state, decision and reason."""
    from engine.db.session import make_engine
    from engine.send.report import status
    from engine.send.runner import resume_target

    async def _status():
        engine = make_engine(ctx.settings().database_url)
        try:
            record, _tenant = await resume_target(engine, tenant, code)
            return await status(engine, record)
        finally:
            await engine.dispose()

    body = run(_status())
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=100)
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(body["states"].items()))
    console.print(f"campaign {body['campaign']} ({body['kind']} {body['channel']}): {body['status']}; {body['total']:,} recipients: {states}")
    outcomes = ", ".join(f"{_OUTCOME_LABEL.get(k, k)} {v:,}" for k, v in sorted(body["outcomes"].items(), key=lambda kv: -kv[1]))
    console.print(f"outcomes: {outcomes}")
    if body["feedback"]:
        came_back = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(body["feedback"].items()))
        console.print(f"came back by mail: {came_back}")
    table = Table()
    for column in ("outcome", "state", "decision", "reason", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for item in body["decisions"]:
        label = _OUTCOME_LABEL.get(item["outcome"], item["outcome"])
        if item["purpose"] == "opt_in_request" and item["outcome"] != "opt_in_request":
            label += " (opt-in request)"  # e.g. an opt-in request waiting out quiet hours
        table.add_row(label, item["state"], item["decision"], item["reason"] or "-", f"{item['count']:,}")
    table.add_row("total", "", "", "", f"{body['total']:,}", style="bold")
    console.print(table)
    unfinished = [item for item in body["last_errors"] if item["state"] in ("pending", "sending", "failed")]
    if unfinished:
        console.print("last errors (every recipient's: `campaign export`):")
        for item in unfinished[:5]:
            console.print(f"  {item['count']:>7,}  {item['state']:<8} {item['last_error']}", markup=False, highlight=False)


@campaign.command("export")
@click.argument("code")
@click.option("--tenant", required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@common_options
@pass_context
def campaign_export(ctx: Context, code: str, tenant: str, out: str) -> None:
    """One CSV row per recipient: decision, reason, state, provider id, attempts, sent at."""
    from engine.db.session import make_engine
    from engine.send.report import export
    from engine.send.runner import resume_target

    async def _export():
        engine = make_engine(ctx.settings().database_url)
        try:
            record, _tenant = await resume_target(engine, tenant, code)
            with open(out, "w", newline="", encoding="utf-8") as handle:
                return await export(engine, record, handle)
        finally:
            await engine.dispose()

    count = run(_export())
    click.echo(f"wrote {count:,} rows to {out}")
