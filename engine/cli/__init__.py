"""The `consentry` command line (FORMATS.md, "Commands")."""

from __future__ import annotations

import sys

import click

from engine.cli.common import Context, common_options, pass_context, report_error, run
from engine.clock import Clock, system_clock


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs: `consentry db init` should
    not pay for aiohttp, twilio and the capture servers."""

    lazy = {
        "contacts": "engine.cli.imports:contacts",
        "consent": "engine.cli.imports:consent",
        "campaign": "engine.cli.campaign:campaign",
        "explain": "engine.cli.campaign:explain",
        "send": "engine.cli.send:send",
        "capture": "engine.cli.capture:capture",
        "inbound": "engine.cli.inbound:inbound",
        "serve": "engine.cli.serve:serve",
        "keys": "engine.cli.serve:keys",
        "users": "engine.cli.users:users",
        "worker": "engine.cli.worker:worker",
        "webhooks": "engine.cli.webhooks:webhooks",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attribute = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Consentry: bulk campaigns by email and SMS, gated by consent."""
    ctx.ensure_object(Context)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("init")
@common_options
@pass_context
def db_init(ctx: Context) -> None:
    """Create or upgrade the schema (idempotent)."""
    from engine.db.migrate import upgrade
    from engine.db.session import make_engine

    async def _init() -> str:
        engine = make_engine(ctx.settings().database_url)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    revision = run(_init())
    click.echo(f"database ready at revision {revision}")


@cli.group()
def tenant() -> None:
    """Tenants and their policies."""


@tenant.command("apply")
@click.argument("path", type=click.Path(dir_okay=False))
@common_options
@pass_context
def tenant_apply(ctx: Context, path: str) -> None:
    """Validate tenant.yaml and store it as the tenant's new policy version."""
    from campaigns.tenant_file import load_tenant_file
    from engine.db.session import make_engine
    from engine.db.tenants import apply_policy

    policy, source = load_tenant_file(path)

    async def _apply():
        engine = make_engine(ctx.settings().database_url)
        try:
            async with engine.begin() as conn:
                return await apply_policy(conn, policy, source, ctx.clock, actor="cli")
        finally:
            await engine.dispose()

    record, changed = run(_apply())
    state = f"policy version {record.policy_version}" + ("" if changed else " (unchanged)")
    click.echo(f"tenant {record.code}: {state}")


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> None:
    """Entry point: click parses, errors become one stderr line and an exit code.

    `clock` replaces the wall clock for every instant the command reads or records.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="consentry", standalone_mode=False, obj=Context(clock or system_clock))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError | click.BadParameter) else exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence prints one line
        sys.exit(report_error(exc, debug))
    sys.exit(0)
