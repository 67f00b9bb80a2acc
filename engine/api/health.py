"""GET /healthz: is this process serving, and can it reach its database?

200 `{"status": "ok"}` when a trivial query answers; 503 with the database error otherwise,
so a load balancer takes the instance out instead of letting it answer 500s.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from engine.api import openapi
from engine.api.services import services

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        async with services(request).engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("health check: database unreachable: %s", exc)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {}
_HEALTH = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}, "database": {"type": "string"}},
}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {
        "get": {
            "operationId": "getHealth",
            "summary": "Is the process serving and its database reachable",
            "security": [],
            "responses": {
                "200": openapi.json_response("healthy", _HEALTH),
                "503": openapi.json_response("the database is unreachable", _HEALTH),
            },
        }
    }
}
