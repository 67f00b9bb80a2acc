"""Who may open a desk page: the session behind the cookie, its role, and the CSRF token.

`@desk_view(permission)` wraps a handler `(request, view)`:

- no live session → 303 to the sign-in page, remembering where the person was going;
- a role without `permission` → 403, a page saying what the role may not do (the API's
  rights table, engine/api/auth.py, is the one source: the desk asks the same question);
- any request that changes something (POST) → the form's `csrf_token` must equal the
  session's, and an `Origin` header, when the browser sends one, must be this site's;
  otherwise 403 and nothing is done.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from engine.api.auth import Caller, Permission
from engine.api.services import Services, services
from engine.desk.pages import page
from engine.desk.sessions import COOKIE, Session, csrf_matches, load_session

__all__ = ["DeskView", "desk_view", "redirect", "same_origin"]

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class DeskView:
    """What a desk handler gets besides the request: the session and the shared services."""

    session: Session
    services: Services
    path: str

    @property
    def caller(self) -> Caller:
        return self.session.caller

    def page(self, template: str, context: Mapping[str, Any], status: int = 200) -> web.Response:
        return page(
            template, context, caller=self.caller, csrf_token=self.session.csrf_token,
            signed_in_as=self.session.signed_in_as, status=status, path=self.path,
        )


DeskHandler = Callable[[web.Request, DeskView], Awaitable[web.StreamResponse]]


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs the result (no re-POST on reload)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def same_origin(request: web.Request, public_url: str) -> bool:
    """No Origin header (an older browser, a script) leaves the CSRF token to decide; one
    that names another site, or "null", is refused outright. This site is the request's
    Host or the configured public URL (behind a proxy that rewrites Host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc in {request.host, urlsplit(public_url).netloc}


def desk_view(permission: Permission | None = None) -> Callable[[DeskHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    def decorate(handler: DeskHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            shared = services(request)
            async with shared.engine.connect() as conn:
                session = await load_session(conn, request.cookies.get(COOKIE), shared.clock)
            if session is None:
                if request.method in _CHANGES:
                    return page("signed_out.html", {}, status=403)
                return redirect(f"/desk/sign-in?next={quote(request.path_qs, safe='')}")
            view = DeskView(session, shared, request.path)
            if request.method in _CHANGES:
                form = await request.post()
                token = form.get("csrf_token")
                if not same_origin(request, shared.settings.public_url) or not csrf_matches(session, token if isinstance(token, str) else None):
                    return view.page("forbidden.html", {
                        "reason": "This form has expired or did not come from this site. Go back, reload the page "
                                  "and try again.",
                    }, status=403)
            if permission is not None and not session.caller.may(permission):
                return view.page("forbidden.html", {
                    "reason": f"Your role ({session.caller.role.value}) may not "
                              f"{permission.value.replace('_', ' ')}.",
                }, status=403)
            return await handler(request, view)

        return wrapper

    return decorate
