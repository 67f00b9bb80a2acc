"""Rendering desk pages: our own templates (templates/desk/), in Jinja2's sandbox.

Unlike campaign templates these are written by us, so they may `{% extends %}` the layout;
they still render in `SandboxedEnvironment` with autoescaping and `StrictUndefined`, because
what they print (contact names, notes, campaign names) is typed by other people and a
template must never reach past the values it is handed.

Every desk response carries the same headers: no caching (pages show personal data), no
framing, a Content-Security-Policy that allows only our own stylesheet and script (no
inline script, so an injected `<script>` would not run even if escaping failed).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2
from aiohttp import web
from jinja2.sandbox import SandboxedEnvironment

from engine.api.auth import Caller, Permission
from engine.render.lookup import builtin_templates
from engine.timeutil import iso_z

__all__ = ["HEADERS", "environment", "page", "render"]

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
}

# The navigation, in order: (path, label, the permission that shows it).
NAVIGATION = (
    ("/desk/campaigns", "Campaigns", Permission.READ_CAMPAIGNS),
    ("/desk/contacts", "Contacts", Permission.READ_CONTACTS),
    ("/desk/settings", "Settings", Permission.WRITE_POLICY),
)


@functools.cache
def environment() -> SandboxedEnvironment:
    root = builtin_templates() / "desk"
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(root)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["instant"] = lambda us: iso_z(us) if us is not None else ""
    env.filters["thousands"] = lambda n: f"{n:,}" if n is not None else ""
    return env


def render(template: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(template).render(context)


def page(
    template: str,
    context: Mapping[str, Any],
    *,
    caller: Caller | None = None,
    csrf_token: str = "",
    signed_in_as: str = "",
    status: int = 200,
    path: str = "",
) -> web.Response:
    """A desk page: `template` rendered with `context` plus what the layout needs (who is
    signed in, the navigation their role may see, the CSRF token for forms)."""
    navigation = [
        {"path": target, "label": label, "current": path.startswith(target)}
        for target, label, permission in NAVIGATION
        if caller is not None and caller.may(permission)
    ]
    full = {
        "caller": caller, "csrf_token": csrf_token, "signed_in_as": signed_in_as, "navigation": navigation,
        **context,
    }
    return web.Response(
        text=render(template, full), status=status, content_type="text/html", charset="utf-8", headers=HEADERS
    )
