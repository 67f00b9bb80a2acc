"""What every handler of the HTTP service shares, kept on the aiohttp application.

The application is built once with its settings, its database engine, its metrics and its
clock (`build_app`); handlers read them through `services(request)`, never through
globals, so a test runs the real application against its own database on port 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.config import Settings
from metrics import Instruments

__all__ = ["SERVICES", "Services", "services"]


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    instruments: Instruments
    # The instant every event this service records is dated at (engine.clock).
    clock: Clock

    @property
    def token_secrets(self) -> tuple[bytes, ...]:
        """The keys unsubscribe / preference tokens verify with: the current secret (the
        send pipeline signs with it), then the retired ones still honoured."""
        return self.settings.link_secrets


SERVICES = web.AppKey("consentry_services", Services)


def services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]
