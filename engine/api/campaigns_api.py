"""Campaigns over the API: check a definition (a dry run), read a launched one's status.

POST /api/v1/campaigns/check takes a campaign definition as JSON (FORMATS.md,
"campaign.yaml", the same keys) and gates its whole audience at `?at=` (default now)
without recording anything: the counts per decision and reason, as `campaign check`
prints them. GET /api/v1/campaigns/{code}/status is `campaign status --json`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from campaigns.definition import parse_campaign
from engine.api import openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.problems import problem
from engine.api.requests import at_param, json_object, own_tenant
from engine.api.services import services
from engine.db.tenants import load_tenant
from engine.gate.check import check_campaign
from engine.send.launch import find_campaign
from engine.send.report import status
from engine.timeutil import iso_z

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes"]

routes = web.RouteTableDef()


@routes.post("/api/v1/campaigns/check")
@requires(Permission.CHECK_CAMPAIGNS)
async def check(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    at_us = at_param(request, shared.clock())
    body = own_tenant(await json_object(request), caller)
    definition = parse_campaign(body, shown="campaign")
    async with shared.engine.connect() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
    report = await check_campaign(shared.engine, definition, tenant, at_us, batch_size=shared.settings.batch_size)
    return web.json_response(
        {"campaign": definition.code, "tenant": tenant.code, "at": iso_z(at_us), **report.as_dict()}
    )


@routes.get("/api/v1/campaigns/{code}/status")
@requires(Permission.READ_CAMPAIGNS)
async def campaign_status(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    code = request.match_info["code"]
    async with shared.engine.connect() as conn:
        record = await find_campaign(conn, caller.tenant_id, code)
    if record is None:
        return problem(404, f"campaign {code!r} not found")
    return web.json_response(await status(shared.engine, record))


OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "CampaignCheck": {
        "type": "object",
        "required": ["campaign", "tenant", "at", "total", "elapsed_s", "counts"],
        "properties": {
            "campaign": {"type": "string"}, "tenant": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "total": {"type": "integer"}, "elapsed_s": {"type": "number"},
            "counts": {"type": "array", "items": {
                "type": "object", "required": ["decision", "reason", "count", "percent"],
                "properties": {
                    "decision": {"type": "string"}, "reason": {"type": ["string", "null"]},
                    "count": {"type": "integer"}, "percent": {"type": "number"},
                },
            }},
        },
    },
    "CampaignStatusReport": {"type": "object", "description": "as `consentry campaign status --json` prints it"},
}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/campaigns/check": {
        "post": {
            "operationId": "checkCampaign",
            "summary": "Dry run: gate a campaign definition's audience and count the decisions",
            "description": "admin, manager, marketer. The body is campaign.yaml as JSON (FORMATS.md); records nothing.",
            "parameters": [{"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
            "requestBody": openapi.json_body({"type": "object", "description": "campaign.yaml as JSON"}),
            "responses": openapi.secured(
                {"200": openapi.json_response("the counts", {"$ref": "#/components/schemas/CampaignCheck"})},
                body=True, not_found=True,
            ),
        }
    },
    "/api/v1/campaigns/{code}/status": {
        "get": {
            "operationId": "getCampaignStatusReport",
            "summary": "A launched campaign's progress",
            "description": "admin, manager, marketer.",
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
            "responses": openapi.secured(
                {"200": openapi.json_response("the status", {"$ref": "#/components/schemas/CampaignStatusReport"})},
                not_found=True,
            ),
        }
    },
}
