"""The HTTP service behind `consentry serve`: one aiohttp application.

Routes (docs/api.md):

    GET  POST /u/{token}                        one-click unsubscribe (RFC 8058)
    GET  POST /p/{token}                        preference centre
    POST      /webhooks/twilio/{tenant}/inbound SMS keywords and plain-language revocations
    POST      /webhooks/twilio/{tenant}/status  delivery status callbacks
    GET       /api/v1/contacts?q=               (API key) search, cursor-paginated
    GET  PUT  /api/v1/contacts/{id}             (API key; PUT admin/manager/sales) one contact
    POST      /api/v1/contacts/batch            (API key; admin/manager/sales) upsert up to 1,000
    GET  POST /api/v1/contacts/{id}/consent-events (API key; POST admin/manager/sales) the ledger
    GET       /api/v1/contacts/{id}/explain     (API key) every rule's verdict
    GET       /api/v1/openapi.json              the OpenAPI 3.1 document of /api/v1
    POST      /api/v1/campaigns/check           (API key) dry run of a definition
    GET       /api/v1/campaigns/{code}/status   (API key)
    POST      /api/v1/campaigns                 (API key) create a draft
    POST      /api/v1/campaigns/{code}/check|launch|pause|resume|cancel  (API key)
    GET       /api/v1/campaigns/{code}/deliveries  (API key) streamed CSV / NDJSON
    GET  PUT  /api/v1/tenant/policy             (API key; PUT admin/manager)
    GET  POST /api/v1/webhooks                  (admin key) outbound webhook endpoints
    GET  DELETE /api/v1/webhooks/{id}           (admin key)
    GET       /api/v1/webhooks/{id}/deliveries  (admin key) each event's delivery state
    GET       /healthz
    GET  POST /desk/...                         the desk: web pages behind sign-in (engine/desk/)

/metrics is not among them: it names every tenant, so `consentry serve` exports it on a
listener of its own (`--metrics-host/--metrics-port`, loopback by default), never on this
public one.

Twilio's webhooks are written by a group-committing writer, a background task of the
application (engine/api/webhook_writer.py). With `settings.webhook_dispatch` (the default) the application also runs a webhook
dispatcher in the background (engine/webhooks/dispatcher.py).

The application owns its database engine when it made one (disposed on shutdown); an
engine passed in belongs to the caller.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import desk
from engine.api import (
    active_campaigns,
    campaign_lifecycle,
    campaign_runs,
    campaigns_api,
    consent_api,
    contacts_api,
    deliveries_api,
    health,
    openapi,
    policy_api,
    preferences,
    replies_api,
    unsubscribe,
    webhooks,
    webhooks_out,
)
from engine.api.connections import ConnectionGuard
from engine.api.problems import api_errors
from engine.api.services import SERVICES, Services
from engine.clock import Clock
from engine.config import Settings
from engine.db.session import make_engine
from metrics import Instruments, default_instruments

__all__ = ["MODULES", "build_app"]

# Every module's routes, in registration order; engine/api/openapi.py documents those under
# /api/v1 from the same tuple.
MODULES = (
    unsubscribe, preferences, webhooks, contacts_api, consent_api, replies_api, campaigns_api, campaign_lifecycle,
    deliveries_api, policy_api, webhooks_out, health, openapi,
)

# Forms and JSON bodies here are small (a policy is a few KB); refuse anything huge early.
MAX_BODY_BYTES = 1024 * 1024


def build_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    instruments: Instruments | None = None,
    clock: Clock,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    """The application. Metrics go to `instruments` (default: the process-wide ones);
    `guard` (engine/api/connections.py) times request bodies and learns which connections
    are in the middle of a request."""
    instruments = instruments or default_instruments()
    owns_engine = engine is None
    database = engine or make_engine(settings.database_url)
    middlewares = [api_errors] if guard is None else [api_errors, guard.middleware]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = Services(settings=settings, engine=database, instruments=instruments, clock=clock)
    for module in MODULES:
        app.router.add_routes(module.routes)
    desk.install(app)
    active_campaigns.install(app, database, instruments, clock)
    campaign_runs.install(app, settings, clock)
    _run_webhook_writer(app, database, settings, instruments, clock)
    if settings.webhook_dispatch:
        _run_dispatcher(app, database, settings, instruments, clock)

    if owns_engine:

        async def dispose(_app: web.Application) -> None:
            await database.dispose()

        app.on_cleanup.append(dispose)
    return app


def _run_dispatcher(
    app: web.Application, database: AsyncEngine, settings: Settings, instruments: Instruments, clock: Clock
) -> None:
    """The webhook dispatcher as a background task of the application: started with it,
    stopped (its batch in flight finished and recorded) before the engine is disposed."""
    from engine.webhooks.dispatcher import Dispatcher, DispatchOptions

    dispatcher = Dispatcher(database, clock, DispatchOptions.from_settings(settings), instruments)

    async def running(_app: web.Application):  # noqa: ANN202
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(running)


def _run_webhook_writer(
    app: web.Application, database: AsyncEngine, settings: Settings, instruments: Instruments, clock: Clock
) -> None:
    """The Twilio webhook writer as a background task: started with the application, and
    drained (every write handed to it committed) before the engine is disposed."""
    writer = webhooks.WebhookWriter(database, clock, instruments, grouped=settings.twilio_group_commit,
                                    status_wait_s=settings.twilio_status_wait_s)
    app[webhooks.WRITER] = writer

    async def running(_app: web.Application):  # noqa: ANN202
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(running)
