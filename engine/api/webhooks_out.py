"""The webhook endpoints API: /api/v1/webhooks (admin keys only; docs/api.md "Webhooks out").

    POST   /api/v1/webhooks                   register {url, event_types, description?};
                                              201 with the signing secret, shown this once
    GET    /api/v1/webhooks                   the tenant's endpoints (never their secrets)
    GET    /api/v1/webhooks/{id}              one endpoint
    DELETE /api/v1/webhooks/{id}              204; what it had pending is cancelled
    GET    /api/v1/webhooks/{id}/deliveries   newest first: state, attempts, last attempt,
                                              next retry; ?state=pending|delivered|failed|cancelled,
                                              ?limit= (1-500, default 50), ?before= (cursor)

The tenant is the key's: an endpoint of another tenant is 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from engine.api import idempotency, openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.problems import problem
from engine.api.requests import int_param, json_object
from engine.api.services import services
from engine.errors import InputError, NotFoundError
from engine.webhooks import (
    DeliveryRecord,
    EndpointRecord,
    MessageState,
    create_endpoint,
    delete_endpoint,
    endpoint_deliveries,
    get_endpoint,
    list_endpoints,
)
from engine.webhooks.events import instant

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes"]

routes = web.RouteTableDef()
MAX_PAGE = 500


def endpoint_json(record: EndpointRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "url": record.url,
        "event_types": list(record.event_types),
        "description": record.description,
        "created_at": instant(record.created_at_us),
    }


def delivery_json(record: DeliveryRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "state": record.state,
        "attempts": record.attempts,
        "created_at": instant(record.created_at_us),
        "last_attempt_at": instant(record.last_attempt_at_us),
        "last_status": record.last_status,
        "last_error": record.last_error,
        # A new event is due at once: no retry time to show until an attempt failed.
        "next_attempt_at": instant(record.next_attempt_at_us) if record.next_attempt_at_us else None,
        "delivered_at": instant(record.delivered_at_us),
    }


def _endpoint_id(request: web.Request) -> int:
    text = request.match_info["endpoint_id"]
    if not text.isdigit() or len(text) > 18:
        raise NotFoundError(f"no webhook endpoint {text}")
    return int(text)


@routes.post("/api/v1/webhooks")
@requires(Permission.MANAGE_WEBHOOKS)
async def create(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    key = idempotency.request_key(request)
    body = await json_object(request)
    unknown = sorted(set(body) - {"url", "event_types", "description"})
    if unknown:
        raise InputError("unknown field (expected url, event_types, description)", field=unknown[0])
    digest = idempotency.request_hash(request, await request.read())
    try:
        async with shared.engine.begin() as conn:
            if key is not None:
                stored = await idempotency.replay(conn, caller.tenant_id, key, digest)
                if stored is not None:
                    return stored
            record, secret = await create_endpoint(
                conn, caller.tenant_id, body.get("url"), body.get("event_types"), body.get("description"), shared.clock()
            )
            answer = {**endpoint_json(record), "secret": secret}
            if key is not None:  # in the same transaction: one endpoint per key, whatever happens
                await idempotency.remember(conn, caller.tenant_id, key, digest, 201, answer, shared.clock())
    except IntegrityError:
        if key is None:
            raise
        return problem(409, f"another request with this {idempotency.HEADER} is being processed; retry it")
    return web.json_response(answer, status=201, headers={"Location": f"/api/v1/webhooks/{record.id}"})


@routes.get("/api/v1/webhooks")
@requires(Permission.MANAGE_WEBHOOKS)
async def index(request: web.Request, caller: Caller) -> web.Response:
    async with services(request).engine.connect() as conn:
        records = await list_endpoints(conn, caller.tenant_id)
    return web.json_response({"webhooks": [endpoint_json(record) for record in records]})


@routes.get("/api/v1/webhooks/{endpoint_id}")
@requires(Permission.MANAGE_WEBHOOKS)
async def show(request: web.Request, caller: Caller) -> web.Response:
    async with services(request).engine.connect() as conn:
        record = await get_endpoint(conn, caller.tenant_id, _endpoint_id(request))
    return web.json_response(endpoint_json(record))


@routes.delete("/api/v1/webhooks/{endpoint_id}")
@requires(Permission.MANAGE_WEBHOOKS)
async def remove(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    async with shared.engine.begin() as conn:
        await delete_endpoint(conn, caller.tenant_id, _endpoint_id(request), shared.clock())
    return web.Response(status=204)


@routes.get("/api/v1/webhooks/{endpoint_id}/deliveries")
@requires(Permission.MANAGE_WEBHOOKS)
async def deliveries(request: web.Request, caller: Caller) -> web.Response:
    endpoint_id = _endpoint_id(request)
    limit = int_param(request, "limit", 50, 1, MAX_PAGE) or 50
    before = int_param(request, "before", None, 1, None)
    states = request.query.getall("state", [])
    allowed = [state.value for state in MessageState]
    for state in states:
        if state not in allowed:
            raise InputError(f"{state!r} is not one of {', '.join(allowed)}", field="state")
    async with services(request).engine.connect() as conn:
        records, counts = await endpoint_deliveries(
            conn, caller.tenant_id, endpoint_id, limit=limit, before=before, states=states
        )
    next_cursor = records[-1].id if len(records) == limit else None
    return web.json_response({
        "deliveries": [delivery_json(record) for record in records],
        "counts": counts,
        "next_before": next_cursor,
    })



_INSTANT = {"type": ["string", "null"], "format": "date-time"}
_ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_ENDPOINT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "url": {"type": "string"},
    "event_types": {"type": "array", "items": {"type": "string"}},
    "description": {"type": ["string", "null"]},
    "created_at": {"type": "string", "format": "date-time"},
}
OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "WebhookEndpoint": {
        "type": "object",
        "required": ["id", "url", "event_types", "description", "created_at"],
        "properties": _ENDPOINT_PROPERTIES,
    },
    "WebhookDelivery": {
        "type": "object",
        "required": [
            "id", "event_id", "event_type", "state", "attempts", "created_at", "last_attempt_at", "last_status",
            "last_error", "next_attempt_at", "delivered_at",
        ],
        "properties": {
            "id": {"type": "integer"}, "event_id": {"type": "string"}, "event_type": {"type": "string"},
            "state": {"type": "string", "enum": [state.value for state in MessageState]},
            "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_attempt_at": _INSTANT, "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]}, "next_attempt_at": _INSTANT, "delivered_at": _INSTANT,
        },
    },
}
_ENDPOINT = {"$ref": "#/components/schemas/WebhookEndpoint"}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/webhooks": {
        "get": {
            "operationId": "listWebhookEndpoints",
            "summary": "The tenant's webhook endpoints (never their secrets)",
            "description": "admin only.",
            "responses": openapi.secured({"200": openapi.json_response("the endpoints", {
                "type": "object", "required": ["webhooks"],
                "properties": {"webhooks": {"type": "array", "items": _ENDPOINT}},
            })}),
        },
        "post": {
            "operationId": "createWebhookEndpoint",
            "summary": "Register an endpoint; the signing secret is shown in this response only",
            "description": "admin only.",
            "requestBody": openapi.json_body({
                "type": "object", "required": ["url", "event_types"], "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "description": "https (http only to loopback)"},
                    "event_types": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "description": {"type": ["string", "null"], "maxLength": 200},
                },
            }),
            "responses": openapi.secured({"201": openapi.json_response("registered", {
                "type": "object", "required": [*OPENAPI_COMPONENTS["WebhookEndpoint"]["required"], "secret"],
                "properties": {**_ENDPOINT_PROPERTIES, "secret": {"type": "string"}},
            }, headers={"Location": {"schema": {"type": "string"}}})}, body=True),
        },
    },
    "/api/v1/webhooks/{endpoint_id}": {
        "parameters": [_ENDPOINT_ID],
        "get": {
            "operationId": "getWebhookEndpoint",
            "summary": "One endpoint",
            "description": "admin only.",
            "responses": openapi.secured({"200": openapi.json_response("the endpoint", _ENDPOINT)}, not_found=True),
        },
        "delete": {
            "operationId": "deleteWebhookEndpoint",
            "summary": "Delete an endpoint; what it had pending is cancelled",
            "description": "admin only.",
            "responses": openapi.secured({"204": {"description": "deleted"}}, not_found=True),
        },
    },
    "/api/v1/webhooks/{endpoint_id}/deliveries": {
        "get": {
            "operationId": "listWebhookDeliveries",
            "summary": "Each event's delivery to the endpoint, newest first",
            "description": "admin only.",
            "parameters": [
                _ENDPOINT_ID,
                {"name": "state", "in": "query", "schema": {"type": "string", "enum": [state.value for state in MessageState]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": openapi.secured({"200": openapi.json_response("a page of deliveries", {
                "type": "object", "required": ["deliveries", "counts", "next_before"],
                "properties": {
                    "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookDelivery"}},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "next_before": {"type": ["integer", "null"]},
                },
            })}, not_found=True),
        }
    },
}
