"""Campaigns over the API: check a definition (a dry run), read a launched one's status.

POST /api/v1/campaigns/check takes a campaign definition as JSON (FORMATS.md,
"campaign.yaml", the same keys) and gates its whole audience at `?at=` (default now)
without recording anything: the counts per decision and reason, as `campaign check`
prints them. GET /api/v1/campaigns/{code}/status is `campaign status --json`.
"""

from __future__ import annotations

from aiohttp import web

from campaigns.definition import parse_campaign
from engine.api.auth import Caller, Permission, requires
from engine.api.problems import problem
from engine.api.requests import at_param, json_object, own_tenant
from engine.api.services import services
from engine.db.tenants import load_tenant
from engine.gate.check import check_campaign
from engine.send.launch import find_campaign
from engine.send.report import status
from engine.timeutil import iso_z

__all__ = ["OPENAPI_PATHS", "routes"]

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


# -- OpenAPI (components in engine/api/campaign_lifecycle.py) ---------------------------

def _json(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


OPENAPI_PATHS: dict[str, dict] = {
    "/api/v1/campaigns/check": {"post": {
        "operationId": "checkCampaignDefinition", "summary": "Gate a campaign definition's audience (a dry run)",
        "tags": ["campaigns"],
        "parameters": [{"name": "at", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CampaignDefinition"}}}},
        "responses": {
            "200": _json("CampaignCheckReport", "Counts per decision and reason; nothing is recorded."),
            "401": _json("CampaignProblem", "No valid API key."), "403": _json("CampaignProblem", "The key's role may not."),
            "422": _json("CampaignValidationProblem", "Invalid definition; each error names its field."),
        },
    }},
    "/api/v1/campaigns/{code}/status": {"get": {
        "operationId": "campaignStatus", "summary": "`campaign status --json`", "tags": ["campaigns"],
        "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": _json("CampaignStatusReport", "Status, totals per state and outcome, decisions."),
            "401": _json("CampaignProblem", "No valid API key."), "403": _json("CampaignProblem", "The key's role may not."),
            "404": _json("CampaignProblem", "No campaign of this code in the key's tenant."),
        },
    }},
}
