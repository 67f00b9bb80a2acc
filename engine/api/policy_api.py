"""The tenant policy over the API: GET (any role) and PUT (admin and manager only).

PUT takes tenant.yaml as JSON (FORMATS.md, "Tenant policy": the same keys), validates it
key by key exactly as `consentry tenant apply` does, and stores it as a new policy version
when it differs from the current one (re-sending the same policy is harmless). Campaigns
already launched keep the version they snapshotted. Each version records when it was
applied and by whom (the API key's name; `cli` for `consentry tenant apply`).

Conditional updates: GET and PUT answer with `ETag: "policy-<version>"`. A PUT carrying
`If-Match` with any other tag is refused with 412 and changes nothing (someone changed the
settings since this client read them); `If-Match: *` or no If-Match applies
unconditionally (clients that edit a copy they read should send it).

The desk's settings page (engine/desk/settings.py) saves through the same two functions,
`policy_document` and `save_policy`, so a version it applies is validated, stored and
recorded exactly as one sent here.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.tenant_file import validate_tenant
from campaigns.yaml_source import YamlSource
from engine.api import openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.problems import problem
from engine.api.requests import json_object, own_tenant
from engine.api.services import services
from engine.clock import Clock
from engine.db.tenants import (
    TenantRecord,
    apply_policy,
    current_version,
    load_tenant,
    policy_applied,
)
from engine.errors import ConflictError
from engine.timeutil import iso_z

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "StalePolicyError", "policy_document", "routes", "save_policy"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def etag(version: int) -> str:
    return f'"policy-{version}"'


def _matches(header: str, version: int) -> bool:
    """Does an If-Match header (one or more entity tags, or *) match this version?"""
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag(version) in tags


async def _answer(conn: AsyncConnection, tenant: TenantRecord, changed: bool | None) -> web.Response:
    applied = await policy_applied(conn, tenant.id, tenant.policy_version)
    body: dict[str, Any] = {
        "tenant": tenant.code, "policy_version": tenant.policy_version,
        "applied_at": iso_z(applied.applied_at_us), "applied_by": applied.applied_by, "policy": tenant.document,
    }
    if changed is not None:
        body["changed"] = changed
    return web.json_response(body, headers={"ETag": etag(tenant.policy_version)})


class StalePolicyError(ConflictError):
    """The policy changed since the client read it: nothing was applied."""

    def __init__(self, current: int) -> None:
        self.current = current
        super().__init__(f"the policy changed since it was read: the current version is {current}")


def policy_document(body: dict[str, Any], caller: Caller) -> tuple[dict[str, Any], str]:
    """A policy as PUT sends it (tenant.yaml as JSON), validated key by key: returns (the
    policy with every default filled in, the source text to store). Raises InputErrors
    located at each bad key, or InputError for another tenant's code."""
    body = own_tenant(body, caller)
    # JSON is YAML, so the stored source stays readable by `consentry tenant apply`.
    source = json.dumps(body, indent=2, ensure_ascii=False)
    return validate_tenant(YamlSource("tenant policy", body, None)), source


async def save_policy(
    conn: AsyncConnection, caller: Caller, policy: dict[str, Any], source: str, clock: Clock,
    matches: Callable[[int], bool] | None = None,
) -> tuple[TenantRecord, bool]:
    """Apply a validated policy as a new version recorded with `caller.key_name` and the
    clock's time; returns (tenant, changed). With `matches`, the current version is read
    under a lock first and, unless `matches(version)`, StalePolicyError is raised and
    nothing is written (an edit made on a copy someone else has since replaced)."""
    if matches is not None:
        version = await current_version(conn, caller.tenant_id, lock=True)
        if not matches(version):
            raise StalePolicyError(version)
    tenant, changed = await apply_policy(conn, policy, source, clock, actor=caller.key_name)
    if changed:
        log.info("tenant %s: policy version %d applied by %s", tenant.code, tenant.policy_version, caller.key_name)
    return tenant, changed


@routes.get("/api/v1/tenant/policy")
@requires(Permission.READ_POLICY)
async def read_policy(request: web.Request, caller: Caller) -> web.Response:
    async with services(request).engine.connect() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
        return await _answer(conn, tenant, None)


@routes.put("/api/v1/tenant/policy")
@requires(Permission.WRITE_POLICY)
async def write_policy(request: web.Request, caller: Caller) -> web.Response:
    policy, source = policy_document(await json_object(request), caller)
    condition = request.headers.get("If-Match")
    shared = services(request)
    async with shared.engine.begin() as conn:
        try:
            tenant, changed = await save_policy(
                conn, caller, policy, source, shared.clock,
                None if condition is None else functools.partial(_matches, condition),
            )
        except StalePolicyError as exc:
            version = exc.current
            return problem(412, f"the policy changed since it was read: the current version is {version} "
                                f"(ETag {etag(version)}); read it again and re-apply the change",
                           headers={"ETag": etag(version)})
        return await _answer(conn, tenant, changed)


OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "TenantPolicy": {
        "type": "object",
        "required": ["tenant", "policy_version", "applied_at", "applied_by", "policy"],
        "properties": {
            "tenant": {"type": "string"},
            "policy_version": {"type": "integer"},
            "applied_at": {"type": "string", "format": "date-time", "description": "when this version was applied"},
            "applied_by": {"type": ["string", "null"], "description": "the API key's name, or cli; null before this was recorded"},
            "changed": {"type": "boolean", "description": "PUT only: false when the policy was already current"},
            "policy": {"type": "object", "description": "tenant.yaml as JSON (FORMATS.md, \"Tenant policy\")"},
        },
    },
}
_POLICY = {"$ref": "#/components/schemas/TenantPolicy"}
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "\"policy-<version>\": send it back as If-Match"}}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/tenant/policy": {
        "get": {
            "operationId": "getTenantPolicy",
            "summary": "The tenant's current policy",
            "description": "Any role.",
            "responses": openapi.secured({"200": openapi.json_response("the policy", _POLICY, _ETAG)}),
        },
        "put": {
            "operationId": "putTenantPolicy",
            "summary": "Apply a new policy version",
            "description": "admin, manager. Validated key by key as `consentry tenant apply`.",
            "parameters": [{
                "name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "the ETag of the version this change was made on; another version is a 412",
            }],
            "requestBody": openapi.json_body({"type": "object", "description": "tenant.yaml as JSON"}),
            "responses": openapi.secured({
                "200": openapi.json_response("applied", _POLICY, _ETAG),
                "412": {"description": "If-Match names another version: nothing was changed", "headers": _ETAG,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            }, body=True),
        },
    },
}
