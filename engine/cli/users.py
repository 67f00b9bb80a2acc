"""`consentry users ...`: people who sign in to the desk with a name and a password."""

from __future__ import annotations

import sys

import click

from engine.cli.common import Context, common_options, pass_context, run_in_transaction

ROLES = ("admin", "manager", "marketer", "sales", "viewer")


@click.group("users")
def users() -> None:
    """Desk users of a tenant (sign in at /desk with a name and a password)."""


@users.command("add")
@click.option("--tenant", required=True)
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@common_options
@pass_context
def users_add(ctx: Context, tenant: str, username: str, role: str, password_stdin: bool) -> None:
    """Add a user; the password is asked for twice (or read from stdin), never an argument."""
    from engine.desk.users import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    record = run_in_transaction(ctx, lambda conn: create_user(conn, tenant, username, password, role, ctx.clock))
    click.echo(f"desk user {record.username} of tenant {record.tenant}, role {record.role}")


@users.command("list")
@click.option("--tenant", required=True)
@common_options
@pass_context
def users_list(ctx: Context, tenant: str) -> None:
    """The tenant's desk users."""
    from engine.desk.users import list_users
    from engine.timeutil import iso_z

    for record in run_in_transaction(ctx, lambda conn: list_users(conn, tenant)):
        state = f"disabled {iso_z(record.disabled_at_us)}" if record.disabled_at_us else "active"
        click.echo(f"{record.username}\t{record.role}\tcreated {iso_z(record.created_at_us)}\t{state}")


@users.command("disable")
@click.argument("username")
@click.option("--tenant", required=True)
@common_options
@pass_context
def users_disable(ctx: Context, username: str, tenant: str) -> None:
    """Disable a user: their sessions end at once."""
    from engine.desk.users import disable_user

    record = run_in_transaction(ctx, lambda conn: disable_user(conn, tenant, username, ctx.clock))
    click.echo(f"desk user {record.username} of tenant {record.tenant} disabled")
