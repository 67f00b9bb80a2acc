"""Signing in to the desk and out of it.

    GET  POST /desk/sign-in    with a desk user's tenant, name and password, or an API key
    POST      /desk/sign-out
    GET       /desk            the first page the role may open
    GET       /desk/static/*   the stylesheet and the one small script

The cookie (engine/desk/sessions.py) is HttpOnly, SameSite=Lax, limited to /desk, and
Secure when the desk is reached over TLS (directly, or through a proxy that keeps the public
URL's host). Repeated failures for one account or from one address are slowed down
(engine/desk/throttle.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from engine.api.auth import Permission
from engine.api.services import services
from engine.desk.guard import DeskView, desk_view, redirect, same_origin
from engine.desk.pages import page
from engine.desk.sessions import (
    COOKIE,
    LIFETIME_US,
    end_session,
    sign_in_with_key,
    sign_in_with_password,
)
from engine.desk.throttle import THROTTLE
from engine.render.lookup import builtin_templates

__all__ = ["routes"]

routes = web.RouteTableDef()


def _safe_next(target: str | None) -> str:
    """Only a path of this desk: never an open redirect to another site."""
    if not target or not target.startswith("/desk") or target.startswith("//"):
        return "/desk"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/desk"


def _secure(request: web.Request) -> bool:
    public = urlsplit(services(request).settings.public_url)
    return request.secure or (public.scheme == "https" and request.host == public.netloc)


@routes.get("/desk/sign-in")
async def sign_in_form(request: web.Request) -> web.Response:
    return page("sign_in.html", {"next": _safe_next(request.query.get("next")), "error": "", "tenant": "",
                                 "username": ""})


@routes.post("/desk/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    shared = services(request)
    form = await request.post()
    fields = {name: str(form.get(name, "")) for name in ("tenant", "username", "password", "api_key", "next")}
    target = _safe_next(fields["next"])
    if not same_origin(request, shared.settings.public_url):
        return page("forbidden.html", {"reason": "This sign-in form did not come from this site."}, status=403)
    account = fields["api_key"][:12] if fields["api_key"] else f"{fields['tenant']}/{fields['username']}"
    address = request.remote or "unknown"
    now = shared.clock()
    throttle = request.config_dict[THROTTLE]
    if throttle.blocked(account, address, now):
        return page("sign_in.html", {"next": target, "tenant": fields["tenant"], "username": fields["username"],
                                     "error": "Too many failed attempts. Wait a few minutes and try again."},
                    status=429)
    async with shared.engine.begin() as conn:
        if fields["api_key"]:
            cookie = await sign_in_with_key(conn, fields["api_key"], shared.clock)
        else:
            cookie = await sign_in_with_password(
                conn, fields["tenant"], fields["username"], fields["password"], shared.clock
            )
    if cookie is None:
        throttle.failed(account, address, now)
        return page("sign_in.html", {"next": target, "tenant": fields["tenant"], "username": fields["username"],
                                     "error": "That did not match an account. Check the details and try again."},
                    status=401)
    response = redirect(target)
    response.set_cookie(
        COOKIE, cookie, max_age=LIFETIME_US // 1_000_000, path="/desk", httponly=True, samesite="Lax",
        secure=_secure(request),
    )
    return response


@routes.post("/desk/sign-out")
@desk_view()
async def sign_out(request: web.Request, view: DeskView) -> web.Response:
    async with view.services.engine.begin() as conn:
        await end_session(conn, view.session.id, view.services.clock)
    response = redirect("/desk/sign-in")
    response.del_cookie(COOKIE, path="/desk")
    return response


@routes.get("/desk")
@routes.get("/desk/")
@desk_view()
async def home(request: web.Request, view: DeskView) -> web.Response:
    if view.caller.may(Permission.READ_CAMPAIGNS):
        return redirect("/desk/campaigns")
    return redirect("/desk/contacts")


routes.static("/desk/static", str(builtin_templates() / "desk" / "static"))
