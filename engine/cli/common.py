"""What every command shares: `--db`, `--debug`, settings, errors as one line, exit codes.

FORMATS.md: exit 0 on success, 2 on bad input (naming file, line and field), 1 otherwise;
errors go to stderr one line each, a traceback only with --debug.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clock import Clock, system_clock
from engine.config import Settings
from engine.errors import ConsentryError

T = TypeVar("T")


class Context:
    """Per-invocation state: settings, the --debug flag and the clock every command reads.

    The clock is the wall clock unless the caller injects another (`main(argv, clock=...)`:
    tests run the real commands a year ahead).
    """

    def __init__(self, clock: Clock = system_clock) -> None:
        self.database_url: str | None = None
        self.debug = False
        self.clock = clock

    def settings(self, **overrides: Any) -> Settings:
        return Settings.from_environ(database_url=self.database_url, **overrides)


def _set_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.ensure_object(Context).database_url = value
    return value


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(Context).debug = True
    return value


def common_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Adds `--db URL` and `--debug` after the command words of a command."""
    function = click.option(
        "--db", "db", metavar="URL", expose_value=False, is_eager=True, callback=_set_db,
        help="Database URL (default: $CONSENTRY_DATABASE_URL or the SQLite file ./consentry.db).",
    )(function)
    function = click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Print tracebacks.",
    )(function)
    return function


def pass_context(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(click.get_current_context().ensure_object(Context), *args, **kwargs)

    return wrapper


def refuse_public_defaults(settings: Settings, command: str, host: str | None = None) -> None:
    """Exit 2 before anything starts when `command` would publish links (or, for a server
    listening on `host`, accept requests) off this machine while a secret still has its
    public default (Settings.unsafe_off_loopback)."""
    unsafe = settings.unsafe_off_loopback(host)
    if not unsafe:
        return
    from engine.errors import InputError

    where = f"{command} on {host} with {settings.public_url}" if host is not None else (
        f"{command} publishes links to {settings.public_url}"
    )
    verb = "has its public default" if len(unsafe) == 1 else "still have their public defaults"
    raise InputError(
        f"{where} is reachable from other machines, but {', '.join(unsafe)} {verb}: set "
        f"{'it' if len(unsafe) == 1 else 'them'} (anyone could forge unsubscribe links"
        f"{' or Twilio webhooks' if host is not None else ''} otherwise; docs/operations.md)",
        field="environment",
    )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (every platform but Windows), else None:
    asyncio's own.

    Why: a send is mostly event-loop work around its sockets (callbacks, transports,
    futures), and uvloop does that work in C. The same texts and mails go out either way;
    docs/benchmarks.md ("Send, fifth pass") has the CPU a message on both."""
    try:
        import uvloop
    except ImportError:  # no build for this platform: asyncio's loop does the same work
        return None
    return uvloop.new_event_loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` on `loop_factory()`'s loop: what every command runs in."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)


def run_on_database(ctx: Context, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """`work(engine)` on the configured database, the engine disposed however it ends."""
    from engine.db.session import make_engine

    async def _run() -> T:
        engine = make_engine(ctx.settings().database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return run(_run())


def run_in_transaction(ctx: Context, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work(conn)` in one transaction on the configured database (committed if it returns)."""

    async def _work(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_on_database(ctx, _work)


def report_error(exc: BaseException, debug: bool) -> int:
    """Print an error on stderr, one line per problem; return the exit code."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ConsentryError):
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"error: {line}", err=True)
        return exc.exit_code
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        click.echo(f"error: database: {detail}", err=True)
        return 1
    if isinstance(exc, OSError):
        click.echo(f"error: {exc}", err=True)
        return 1
    message = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(f"error: {type(exc).__name__}: {message}", err=True)
    return 1
