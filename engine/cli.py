"""The `consentry` command line (FORMATS.md, "Commands")."""

from __future__ import annotations

import sys

import click

from engine.cli_common import Context, common_options, pass_context, report_error, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
                return await apply_policy(conn, policy, source)
        finally:
            await engine.dispose()

    record, changed = run(_apply())
    state = f"policy version {record.policy_version}" + ("" if changed else " (unchanged)")
    click.echo(f"tenant {record.code}: {state}")


def _register() -> None:
    """Attach the command groups that live in their own modules."""
    import importlib

    for module, name in (
        ("engine.cli_import", "contacts"),
        ("engine.cli_import", "consent"),
        ("engine.cli_campaign", "campaign"),
        ("engine.cli_campaign", "explain"),
        ("engine.cli_send", "send"),
        ("engine.cli_capture", "capture"),
        ("engine.cli_serve", "serve"),
        ("engine.cli_worker", "worker"),
        ("engine.cli_serve", "keys"),
    ):
        try:
            command = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: click parses, errors become one stderr line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="consentry", standalone_mode=False)
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
