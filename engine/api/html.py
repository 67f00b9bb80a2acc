"""HTML responses for the pages behind links in messages (/u/{token}, /p/{token}).

Pages come from engine/render (`render_page`); this module only adds the headers every such
page needs: the URL carries a bearer token, so nothing may cache it, index it or pass it on
in a Referer.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from engine.render import render_page

__all__ = ["link_not_found", "page_response"]

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}


def page_response(name: str, context: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(
        text=render_page(name, context), status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def link_not_found() -> web.Response:
    """404 for a token that does not verify; the page names no tenant (there is none)."""
    return page_response("link_not_found", {}, status=404)
