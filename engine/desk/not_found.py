"""Any other path under /desk: sign in first, then "no such page". Registered after every
desk module, so it only answers what none of them does; a browser that is not signed in
learns nothing about which pages exist."""

from __future__ import annotations

from aiohttp import web

from engine.desk.guard import DeskView, desk_view

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/desk/{tail:.*}")
@desk_view()
async def not_found(request: web.Request, view: DeskView) -> web.Response:
    return view.page("not_found.html", {}, status=404)
