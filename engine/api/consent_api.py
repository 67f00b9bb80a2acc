"""A contact's consent events (docs/api.md, "Consent events"), for the caller's tenant only.

    POST /api/v1/contacts/{external_id}/consent-events   append one event, or {"events": [...]}
                                                         (up to 1,000, all or nothing); 201
    GET  /api/v1/contacts/{external_id}/consent-events   the ledger, newest first: who, when,
                                                         how, basis, note, wording shown;
                                                         ?limit= (1-500, default 50), ?before=

Each event is checked as a row of a consent file (engine/imports/consent_rows.py) and
appended through engine.imports.record_events, so the projections and the webhook outbox
follow. The actor is the API key's name, never the body's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api import idempotency, openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.contact_bodies import MAX_BATCH, event_rows
from engine.api.contact_views import find_contact, ledger_page
from engine.api.problems import problem
from engine.api.requests import int_param, json_object
from engine.api.services import services
from engine.db.tenants import load_tenant
from engine.errors import InputError, InputErrors
from engine.imports import record_events
from metrics import Instruments

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "append_events", "routes"]

routes = web.RouteTableDef()
MAX_PAGE = 500
PATH = "/api/v1/contacts/{external_id}/consent-events"


@routes.post(PATH)
@requires(Permission.RECORD_CONSENT)
async def append(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    external_id = request.match_info["external_id"]
    key = idempotency.request_key(request)
    body = await json_object(request)
    digest = idempotency.request_hash(request, await request.read())
    if "events" in body:
        items = body["events"]
        unknown = sorted(set(body) - {"events"})
        if unknown:
            raise InputError("unknown field (expected events, or one event's fields)", field=unknown[0])
        if not isinstance(items, list) or not items:
            raise InputError(f"required: a list of 1 to {MAX_BATCH} events", field="events")
        if len(items) > MAX_BATCH:
            raise InputError(f"{len(items)} events; a request holds at most {MAX_BATCH}", field="events")
    else:
        items = [body]
    now = shared.clock()
    try:
        async with shared.engine.begin() as conn:
            contact = await find_contact(conn, caller.tenant_id, external_id)
            if key is not None:
                stored = await idempotency.replay(conn, caller.tenant_id, key, digest)
                if stored is not None:
                    return stored
            recorded = await append_events(conn, caller, contact, items, now, located="events" in body)
            response = {"external_id": external_id, "events": recorded}
            if key is not None:
                await idempotency.remember(conn, caller.tenant_id, key, digest, 201, response, now)
    except IntegrityError:
        if key is None:
            raise
        return problem(409, f"another request with this {idempotency.HEADER} is being processed; retry it")
    count_recorded(shared.instruments, caller, recorded)
    return web.json_response(response, status=201)


def count_recorded(instruments: Instruments, caller: Caller, recorded: list[dict[str, Any]]) -> None:
    """The metrics of events appended through the API or the desk (rows and ledger actions)."""
    instruments.record_import_rows(caller.tenant_code, "consent", {"recorded": len(recorded)})
    instruments.record_ledger_events(caller.tenant_code, Counter(str(event["action"]) for event in recorded))


async def append_events(
    conn: AsyncConnection, caller: Caller, contact: Any, items: list[Any], now_us: int, *, located: bool = True
) -> list[dict[str, Any]]:
    """Check event objects as rows of a consent file and append them to `contact`'s ledger
    (inside the caller's transaction), actor the caller's key (or desk user) name; returns
    the events as recorded, oldest first. Errors raise InputErrors located as
    `events[i].field`, or as the bare field when `located` is False (one event given as the
    body, or one form of the desk)."""
    tenant = await load_tenant(conn, caller.tenant_code)
    errors: list[InputError] = []
    rows = event_rows(items, tenant.policy, contact.external_id, (contact.id, contact.country), errors)
    if errors:
        if not located:
            errors = [InputError(e.message, field=(e.field or "").removeprefix("events[0].")) for e in errors]
        raise InputErrors(errors)
    events = [
        {
            "contact_id": row.contact_id, "action": row.action, "channel": row.channel,
            "class_code": row.class_code, "party": row.party, "address": row.address,
            "method": row.method, "occurred_at_us": row.occurred_at_us, "actor": caller.key_name,
            "basis": row.basis, "note": row.note,
        }
        for row in rows
    ]
    before = (await ledger_page(conn, caller.tenant_id, contact.id, 1, None))[0]
    highest = before[0]["id"] if before else 0
    await record_events(conn, caller.tenant_id, events, recorded_at_us=now_us)
    recorded, _ = await ledger_page(conn, caller.tenant_id, contact.id, len(events), None)
    return [event for event in reversed(recorded) if event["id"] > highest]


@routes.get(PATH)
@requires(Permission.READ_CONTACTS)
async def ledger(request: web.Request, caller: Caller) -> web.Response:
    limit = int_param(request, "limit", 50, 1, MAX_PAGE) or 50
    before = int_param(request, "before", None, 1, None)
    async with services(request).engine.connect() as conn:
        contact = await find_contact(conn, caller.tenant_id, request.match_info["external_id"])
        events, next_before = await ledger_page(conn, caller.tenant_id, contact.id, limit, before)
    return web.json_response({"external_id": contact.external_id, "events": events, "next_before": next_before})




_NULLABLE = {"type": ["string", "null"]}
_EVENT_INPUT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "method", "occurred_at"],
    "properties": {
        "action": {"type": "string", "enum": ["grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review"]},
        "channel": {**_NULLABLE, "description": "email, sms, voice, letter, social or *; empty for opt_out, opt_in, review"},
        "class": {**_NULLABLE, "description": "a class of the tenant's policy, or *; grant and revoke only"},
        "party": {**_NULLABLE, "description": "first (default) or third; grant and revoke only"},
        "address": {**_NULLABLE, "description": "the address the event is about, if only one"},
        "method": {"type": "string", "description": "how: web_form, verbal, written, sms_keyword, email_link, ..."},
        "occurred_at": {"type": "string", "description": "ISO 8601 with an offset"},
        "basis": _NULLABLE,
        "note": _NULLABLE,
    },
}
OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "ConsentEventInput": _EVENT_INPUT,
    "ConsentEvent": {
        "type": "object",
        "required": [
            "id", "action", "channel", "class", "party", "address", "method", "occurred_at", "recorded_at",
            "actor", "basis", "note", "cause", "wording_id", "wording_version",
        ],
        "properties": {
            "id": {"type": "integer"},
            "action": {"type": "string"},
            "channel": _NULLABLE, "class": _NULLABLE, "party": _NULLABLE, "address": _NULLABLE,
            "method": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "actor": {**_NULLABLE, "description": "who: an API key's name, recipient, system, an importer's"},
            "basis": _NULLABLE, "note": _NULLABLE,
            "cause": {**_NULLABLE, "description": "for suppressions the system records: hard_bounce, sms_keyword..."},
            "wording_id": {**_NULLABLE, "description": "the wording the person was shown"},
            "wording_version": _NULLABLE,
        },
    },
}
_EVENTS = {"type": "array", "items": {"$ref": "#/components/schemas/ConsentEvent"}}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    PATH: {
        "parameters": [{
            "name": "external_id", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        }],
        "get": {
            "operationId": "listConsentEvents",
            "summary": "The contact's consent ledger, newest first",
            "description": "Any role.",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}},
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1},
                 "description": "the cursor: next_before of the previous page"},
            ],
            "responses": openapi.secured({"200": openapi.json_response("a page of the ledger", {
                "type": "object",
                "required": ["external_id", "events", "next_before"],
                "properties": {
                    "external_id": {"type": "string"}, "events": _EVENTS,
                    "next_before": {"type": ["integer", "null"], "description": "null on the last page"},
                },
            })}, not_found=True),
        },
        "post": {
            "operationId": "appendConsentEvents",
            "summary": "Record one consent event, or up to 1,000 (all or nothing)",
            "description": "admin, manager, sales. The actor is the API key's name. Errors of a list are located "
            "as events[i].field.",
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": openapi.json_body({"oneOf": [
                {"$ref": "#/components/schemas/ConsentEventInput"},
                {
                    "type": "object", "required": ["events"], "additionalProperties": False,
                    "properties": {"events": {
                        "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                        "items": {"$ref": "#/components/schemas/ConsentEventInput"},
                    }},
                },
            ]}),
            "responses": openapi.secured({
                "201": openapi.json_response("recorded", {
                    "type": "object", "required": ["external_id", "events"],
                    "properties": {"external_id": {"type": "string"}, "events": _EVENTS},
                }),
                "409": {"$ref": "#/components/responses/Conflict"},
            }, body=True, not_found=True),
        },
    },
}
