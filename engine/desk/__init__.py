"""The desk: server-rendered web pages for marketers, sales staff and managers, under
/desk on `consentry serve` (docs/desk.md).

Pages ask the same services the JSON API uses (engine/api, engine/gate, gating/); they never
interpret consent themselves. Templates live in templates/desk/ and render in Jinja2's
sandbox (engine/desk/pages.py). Sign-in, sessions and CSRF: engine/desk/sign_in.py,
sessions.py, guard.py.
"""

from __future__ import annotations

from aiohttp import web

from engine.desk import (
    campaign_new,
    campaigns,
    contact_actions,
    contacts,
    not_found,
    replies,
    settings,
    sign_in,
)
from engine.desk.throttle import THROTTLE, Throttle

__all__ = ["MODULES", "install"]

# Every desk module with `routes`, in registration order; `not_found` (any other /desk path)
# must stay last. campaign_new's /desk/campaigns/new comes before campaigns' /desk/campaigns/{code}.
MODULES = (sign_in, campaign_new, campaigns, contacts, contact_actions, replies, settings, not_found)


def install(app: web.Application) -> None:
    app[THROTTLE] = Throttle()
    for module in MODULES:
        app.router.add_routes(module.routes)
