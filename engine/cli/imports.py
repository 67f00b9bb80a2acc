"""`consentry contacts import` and `consentry consent import` (FORMATS.md, "Commands").

Exit 0 when the file was imported (with `--skip-invalid`, its valid rows); 2 when a row
or the file is bad (every error on stderr as `error: FILE:LINE: FIELD: message`, nothing
written); 1 otherwise. The summary goes to stdout, a progress bar to stderr when it is a
terminal. Rows skipped by `--skip-invalid` are listed on stderr as `rejected: ...`.
"""

from __future__ import annotations

import os
import sys

import click

from engine.cli.common import Context, common_options, pass_context, run, run_on_database
from engine.imports.csv_source import CHUNK_ROWS
from engine.imports.parallel import DEFAULT_WORKERS


def _import_options(function):
    function = click.option(
        "--chunk-rows",
        type=click.IntRange(min=1),
        default=CHUNK_ROWS,
        show_default=True,
        help="Rows read, checked and written at a time (smaller: less memory per worker, more round trips).",
    )(function)
    function = click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=DEFAULT_WORKERS,
        show_default=True,
        help="Processes that check rows (0: check in the importing process).",
    )(function)
    function = click.option(
        "--rejects",
        "rejects_path",
        metavar="PATH",
        type=click.Path(dir_okay=False, writable=True),
        help="Write rejected rows here, with their original columns plus `error`.",
    )(function)
    function = click.option(
        "--skip-invalid", is_flag=True, help="Write the valid rows, skip the others (exit 0)."
    )(function)
    function = click.option("--tenant", required=True, metavar="T", help="Tenant id (tenant.yaml `tenant`).")(function)
    function = click.argument("path", type=click.Path(exists=True, dir_okay=False))(function)
    return function


def _run_import(ctx: Context, kind: str, path: str, tenant: str, skip_invalid: bool,
                rejects_path: str | None, workers: int, chunk_rows: int) -> None:
    from engine.db.session import make_engine
    from engine.imports import import_consent_events, import_contacts
    from engine.imports.progress import progress_bar

    importer = import_contacts if kind == "contacts" else import_consent_events
    if rejects_path is not None and os.path.abspath(rejects_path) == os.path.abspath(path):
        raise click.BadParameter("must not be the file being imported", param_hint="--rejects")

    def rejected(error) -> None:  # noqa: ANN001
        click.echo(f"rejected: {error}", err=True)

    async def _import():
        engine = make_engine(ctx.settings().database_url)
        try:
            with progress_bar(f"{kind} import", os.path.getsize(path), sys.stderr) as on_progress:
                return await importer(
                    engine,
                    path,
                    tenant,
                    skip_invalid=skip_invalid,
                    rejects_path=rejects_path,
                    workers=workers,
                    chunk_rows=chunk_rows,
                    on_reject=rejected if skip_invalid else None,
                    on_progress=on_progress,
                    clock=ctx.clock,
                )
        finally:
            await engine.dispose()

    summary = run(_import())
    click.echo(str(summary))


@click.group()
def contacts() -> None:
    """Contacts."""


@contacts.command("import")
@_import_options
@common_options
@pass_context
def contacts_import(ctx: Context, path: str, tenant: str, skip_invalid: bool, rejects_path: str | None,
                    workers: int, chunk_rows: int) -> None:
    """Import (upsert) contacts from a CSV file, atomically unless --skip-invalid."""
    _run_import(ctx, "contacts", path, tenant, skip_invalid, rejects_path, workers, chunk_rows)


@contacts.command("link")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", required=True, metavar="T", help="Tenant id (tenant.yaml `tenant`).")
@click.option("--actor", metavar="WHO", help="Who linked them (kept on each new link).")
@common_options
@pass_context
def contacts_link(ctx: Context, path: str, tenant: str, actor: str | None) -> None:
    """Link contacts from a CSV file (external_id,linked_external_id,kind): a consent
    change on one is then copied onto the other (docs/imports.md, "Linked contacts")."""
    from engine.imports.links import import_links

    click.echo(str(run_on_database(ctx, lambda engine: import_links(engine, path, tenant, actor=actor, clock=ctx.clock))))


@click.group()
def consent() -> None:
    """The consent ledger."""


@consent.command("import")
@_import_options
@common_options
@pass_context
def consent_import(ctx: Context, path: str, tenant: str, skip_invalid: bool, rejects_path: str | None,
                   workers: int, chunk_rows: int) -> None:
    """Append consent events from a CSV file, atomically unless --skip-invalid."""
    _run_import(ctx, "consent", path, tenant, skip_invalid, rejects_path, workers, chunk_rows)


@consent.command("migrate-legacy")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", required=True, metavar="T", help="Tenant id (tenant.yaml `tenant`).")
@click.option(
    "--assume", required=True, type=click.Choice(["legitimate_interest", "no_permission"]),
    help="What a contact without a 'no' flag is taken to have agreed to.",
)
@click.option("--actor", metavar="WHO", help="Who ran the migration (kept on each event).")
@common_options
@pass_context
def consent_migrate_legacy(ctx: Context, path: str, tenant: str, assume: str, actor: str | None) -> None:
    """Map legacy DPA flags (external_id,no_marketing,no_follow_up) to consent events;
    a later run with --assume no_permission reverses the assumed grants
    (docs/imports.md, "Legacy flags")."""
    from engine.imports.legacy import Assumption, migrate_legacy_flags

    summary = run_on_database(
        ctx, lambda engine: migrate_legacy_flags(engine, path, tenant, Assumption(assume), actor=actor, clock=ctx.clock)
    )
    click.echo(str(summary))
