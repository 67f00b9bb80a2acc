"""The tenant policy over the API: GET (any role) and PUT (admin and manager only).

PUT takes tenant.yaml as JSON (FORMATS.md, "Tenant policy": the same keys), validates it
key by key exactly as `consentry tenant apply` does, and stores it as a new policy version
when it differs from the current one (re-sending the same policy is harmless). Campaigns
already launched keep the version they snapshotted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from campaigns.tenant_file import validate_tenant
from campaigns.yaml_source import YamlSource
from engine.api import openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.requests import json_object, own_tenant
from engine.api.services import services
from engine.db.tenants import apply_policy, load_tenant

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/api/v1/tenant/policy")
@requires(Permission.READ_POLICY)
async def read_policy(request: web.Request, caller: Caller) -> web.Response:
    async with services(request).engine.connect() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
    return web.json_response({"tenant": tenant.code, "policy_version": tenant.policy_version, "policy": tenant.document})


@routes.put("/api/v1/tenant/policy")
@requires(Permission.WRITE_POLICY)
async def write_policy(request: web.Request, caller: Caller) -> web.Response:
    body = own_tenant(await json_object(request), caller)
    # JSON is YAML, so the stored source stays readable by `consentry tenant apply`.
    source = json.dumps(body, indent=2, ensure_ascii=False)
    policy = validate_tenant(YamlSource("tenant policy", body, None))
    async with services(request).engine.begin() as conn:
        tenant, changed = await apply_policy(conn, policy, source, services(request).clock)
    if changed:
        log.info("tenant %s: policy version %d applied by API key %d (%s)", tenant.code, tenant.policy_version,
                 caller.key_id, caller.key_name)
    return web.json_response(
        {"tenant": tenant.code, "policy_version": tenant.policy_version, "changed": changed, "policy": tenant.document}
    )


OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "TenantPolicy": {
        "type": "object",
        "required": ["tenant", "policy_version", "policy"],
        "properties": {
            "tenant": {"type": "string"},
            "policy_version": {"type": "integer"},
            "changed": {"type": "boolean", "description": "PUT only: false when the policy was already current"},
            "policy": {"type": "object", "description": "tenant.yaml as JSON (FORMATS.md, \"Tenant policy\")"},
        },
    },
}
_POLICY = {"$ref": "#/components/schemas/TenantPolicy"}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/tenant/policy": {
        "get": {
            "operationId": "getTenantPolicy",
            "summary": "The tenant's current policy",
            "description": "Any role.",
            "responses": openapi.secured({"200": openapi.json_response("the policy", _POLICY)}),
        },
        "put": {
            "operationId": "putTenantPolicy",
            "summary": "Apply a new policy version",
            "description": "admin, manager. Validated key by key as `consentry tenant apply`.",
            "requestBody": openapi.json_body({"type": "object", "description": "tenant.yaml as JSON"}),
            "responses": openapi.secured({"200": openapi.json_response("applied", _POLICY)}, body=True),
        },
    },
}
