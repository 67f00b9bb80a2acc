"""The contacts resource (docs/api.md, "Contacts"), for the caller's tenant only: a contact
of another tenant is "not found", exactly like one that does not exist.

    PUT  /api/v1/contacts/{external_id}          upsert one: 201 created, 200 updated
    POST /api/v1/contacts/batch                  upsert up to 1,000, all or nothing
    GET  /api/v1/contacts/{external_id}          with addresses and current consent
    GET  /api/v1/contacts?q=&limit=&after=       search as an address book does
    GET  /api/v1/contacts/{external_id}/explain  every rule's verdict and the events it used

Bodies are checked as rows of a contacts file (engine/api/contact_bodies.py) and written by
the import's own writer (engine/imports/contact_writes.py). `marketing_opt_in` (seed 000's
"Opt in to future marketing") records an `opt_out` or `opt_in` (method `api`, actor the
key's name) when it changes the contact's state, and an `opt_in` for a new contact that
ticks it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.api import idempotency, openapi
from engine.api.auth import Caller, Permission, requires
from engine.api.contact_bodies import MAX_BATCH, contact_rows
from engine.api.contact_views import contact_json, contact_page
from engine.api.problems import input_problem, problem
from engine.api.requests import at_param, choice_param, int_param, json_object
from engine.api.services import services
from engine.db.models import Contact
from engine.db.tenants import load_tenant
from engine.errors import InputError, InputErrors
from engine.gate.explain import explain_contact
from engine.imports import record_events
from engine.imports.contact_rows import ContactRow
from engine.imports.contact_writes import write_contact_rows
from engine.imports.statements import contacts_by_external_id

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes"]

routes = web.RouteTableDef()

_contacts = Contact.__table__
MAX_PAGE = 500
CHANNELS = ("email", "sms", "voice")
PARTIES = ("first", "third")
KINDS = ("bulk", "individual")


@routes.get("/api/v1/contacts/{external_id}/explain")
@requires(Permission.EXPLAIN)
async def explain(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    values: dict[str, str | int] = {}
    errors: list[InputError] = []
    for name, read in (
        ("channel", lambda: choice_param(request, "channel", CHANNELS)),
        ("class", lambda: _class_param(request)),
        ("party", lambda: choice_param(request, "party", PARTIES, "first")),
        ("kind", lambda: choice_param(request, "kind", KINDS, "bulk")),
        ("at", lambda: at_param(request, shared.clock())),
    ):
        try:
            values[name] = read()
        except InputError as exc:
            errors.append(exc)
    if errors:
        return input_problem(errors)
    result = await explain_contact(
        shared.engine, caller.tenant_code, request.match_info["external_id"], str(values["channel"]),
        str(values["class"]), str(values["party"]), str(values["kind"]), int(values["at"]),
    )
    return web.json_response(result.as_dict(), dumps=_dumps)


def _class_param(request: web.Request) -> str:
    value = request.query.get("class", "")
    if not value:
        raise InputError("required (a class of the tenant's policy)", field="class")
    return value


def _dumps(value: object) -> str:
    # Explanations may carry enums and instants; their str() is their public spelling.
    return json.dumps(value, default=str)


async def _upsert(
    conn: AsyncConnection, caller: Caller, checked: list[tuple[ContactRow, bool | None]], now_us: int
) -> list[dict[str, Any]]:
    """Write checked rows; record what `marketing_opt_in` changes. Returns per row
    `{external_id, created}`."""
    rows = [row for row, _ in checked]
    existing = await contacts_by_external_id(conn, caller.tenant_id, [row.external_id for row in rows], _contacts.c.opted_out)
    contact_id, created = await write_contact_rows(conn, caller.tenant_id, now_us, rows, existing)
    new = set(created)
    events = []
    for row, opt_in in checked:
        if opt_in is None:
            continue
        is_new = row.external_id in new
        opted_out = False if is_new else bool(existing[row.external_id][1])
        # A new contact's tick is evidence worth keeping; otherwise only a change is an event.
        if (is_new and opt_in) or opted_out == opt_in:
            events.append({
                "contact_id": contact_id[row.external_id], "action": "opt_in" if opt_in else "opt_out",
                "method": "api", "occurred_at_us": now_us, "actor": caller.key_name,
                "note": f"marketing_opt_in set to {'true' if opt_in else 'false'}",
            })
    await record_events(conn, caller.tenant_id, events, recorded_at_us=now_us)
    return [{"external_id": row.external_id, "created": row.external_id in new} for row in rows]


@routes.put("/api/v1/contacts/{external_id}")
@requires(Permission.WRITE_CONTACTS)
async def put_contact(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    external_id = request.match_info["external_id"]
    body = await json_object(request)
    errors: list[InputError] = []
    given = body.get("external_id", external_id)
    if given != external_id:
        errors.append(InputError(f"must be the URL's {external_id!r} (or left out)", field="external_id"))
    now = shared.clock()
    async with shared.engine.begin() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
        checked = contact_rows([{**body, "external_id": external_id}], tenant.policy, "", errors)
        if errors:
            raise InputErrors(errors)
        results = await _upsert(conn, caller, checked, now)
        shown = await contact_json(conn, tenant, external_id, now)
    status = 201 if results[0]["created"] else 200
    return web.json_response(shown, status=status, headers={"Location": f"/api/v1/contacts/{external_id}"})


@routes.post("/api/v1/contacts/batch")
@requires(Permission.WRITE_CONTACTS)
async def batch(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    key = idempotency.request_key(request)
    body = await json_object(request)
    digest = idempotency.request_hash(request, await request.read())
    items = body.get("contacts")
    unknown = sorted(set(body) - {"contacts"})
    if unknown:
        raise InputError("unknown field (expected contacts)", field=unknown[0])
    if not isinstance(items, list) or not items:
        raise InputError(f"required: a list of 1 to {MAX_BATCH} contact objects", field="contacts")
    if len(items) > MAX_BATCH:
        raise InputError(f"{len(items)} contacts; a batch holds at most {MAX_BATCH}", field="contacts")
    now = shared.clock()
    try:
        async with shared.engine.begin() as conn:
            if key is not None:
                stored = await idempotency.replay(conn, caller.tenant_id, key, digest)
                if stored is not None:
                    return stored
            tenant = await load_tenant(conn, caller.tenant_code)
            errors: list[InputError] = []
            checked = contact_rows(items, tenant.policy, "contacts[", errors)
            if errors:
                raise InputErrors(errors)  # leaves the transaction: nothing written
            results = await _upsert(conn, caller, checked, now)
            created = sum(1 for result in results if result["created"])
            response = {"created": created, "updated": len(results) - created, "contacts": results}
            if key is not None:
                await idempotency.remember(conn, caller.tenant_id, key, digest, 200, response, now)
    except IntegrityError:
        if key is None:
            raise
        return problem(409, f"another request with this {idempotency.HEADER} is being processed; retry it")
    # A DMS's sync through the API is an import too (consentry_import_rows_total).
    shared.instruments.record_import_rows(caller.tenant_code, "contacts", {"created": created, "updated": len(results) - created})
    return web.json_response(response)


@routes.get("/api/v1/contacts/{external_id}")
@requires(Permission.READ_CONTACTS)
async def show(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    async with shared.engine.connect() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
        shown = await contact_json(conn, tenant, request.match_info["external_id"], shared.clock())
    return web.json_response(shown)


@routes.get("/api/v1/contacts")
@requires(Permission.READ_CONTACTS)
async def search(request: web.Request, caller: Caller) -> web.Response:
    limit = int_param(request, "limit", 50, 1, MAX_PAGE) or 50
    after = int_param(request, "after", None, 0, None)
    q = request.query.get("q", "")
    if len(q) > 320:
        raise InputError("at most 320 characters", field="q")
    async with services(request).engine.connect() as conn:
        contacts, next_after = await contact_page(conn, caller.tenant_id, q, limit, after)
    return web.json_response({"contacts": contacts, "next_after": next_after})


_NULLABLE = {"type": ["string", "null"]}
_INSTANT = {"type": ["string", "null"], "format": "date-time"}
_EXTERNAL_ID = {
    "name": "external_id", "in": "path", "required": True,
    "description": "the contact's id in the tenant's own system (DMS, CRM)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_INPUT_PROPERTIES: dict[str, Any] = {
    "external_id": {"type": "string", "maxLength": 200},
    "first_name": _NULLABLE, "last_name": _NULLABLE,
    "email": {**_NULLABLE, "description": "local@domain; stored with the domain lower-cased"},
    "phone": {**_NULLABLE, "description": "read in the contact's country (else the tenant's); stored as E.164"},
    "timezone": {**_NULLABLE, "description": "IANA zone, e.g. America/Chicago"},
    "country": {**_NULLABLE, "description": "ISO 3166 alpha-2"},
    "region": _NULLABLE, "lead_source": _NULLABLE,
    "reviewed_at": {**_NULLABLE, "description": "a date or an ISO 8601 date-time"},
    "marketing_opt_in": {
        "type": ["boolean", "null"],
        "description": "\"Opt in to future marketing\": a change records an opt_in or opt_out (method api)",
    },
}
_CONTACT_BASE: dict[str, Any] = {
    "type": "object",
    "required": [
        "external_id", "first_name", "last_name", "timezone", "country", "region", "lead_source",
        "reviewed_at", "marketing_opt_in", "created_at", "updated_at", "addresses",
    ],
    "properties": {
        "external_id": {"type": "string"},
        "first_name": _NULLABLE, "last_name": _NULLABLE, "timezone": _NULLABLE, "country": _NULLABLE,
        "region": _NULLABLE, "lead_source": _NULLABLE, "reviewed_at": _INSTANT,
        "marketing_opt_in": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "addresses": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "address", "valid"],
                "properties": {
                    "kind": {"type": "string", "enum": ["email", "phone"]},
                    "address": {"type": "string"},
                    "valid": {"type": "boolean"},
                },
            },
        },
    },
}
OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "ContactInput": {"type": "object", "additionalProperties": False, "properties": _INPUT_PROPERTIES},
    "ContactSummary": _CONTACT_BASE,
    "Contact": {
        **_CONTACT_BASE,
        "required": [*_CONTACT_BASE["required"], "consent"],
        "properties": {
            **_CONTACT_BASE["properties"],
            "consent": {
                "type": "array",
                "description": "each choosable channel x class x party as gating reads the ledger now",
                "items": {
                    "type": "object",
                    "required": ["channel", "class", "party", "mode", "consented", "revoked", "event_id"],
                    "properties": {
                        "channel": {"type": "string"}, "class": {"type": "string"}, "party": {"type": "string"},
                        "mode": {"type": "string", "enum": ["opt_in", "opt_out", "exempt"]},
                        "consented": {"type": "boolean"}, "revoked": {"type": "boolean"},
                        "event_id": {"type": ["integer", "null"]},
                    },
                },
            },
        },
    },
    "ContactExplanation": {
        "type": "object",
        "required": ["tenant", "contact", "channel"],
        "properties": {"tenant": {"type": "string"}, "contact": {"type": "string"}, "channel": {"type": "string"}},
    },
}
_CONTACT_REF = {"$ref": "#/components/schemas/Contact"}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/contacts": {
        "get": {
            "operationId": "searchContacts",
            "summary": "Search contacts by name, email, phone or external_id",
            "description": "Any role. Without q: every contact, in id order.",
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 320},
                 "description": "external_id (exact); first, last or full name and email (prefix, any case); phone digits"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}},
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "the cursor: next_after of the previous page"},
            ],
            "responses": openapi.secured({"200": openapi.json_response("a page of contacts", {
                "type": "object",
                "required": ["contacts", "next_after"],
                "properties": {
                    "contacts": {"type": "array", "items": {"$ref": "#/components/schemas/ContactSummary"}},
                    "next_after": {"type": ["integer", "null"], "description": "null on the last page"},
                },
            })}),
        }
    },
    "/api/v1/contacts/batch": {
        "post": {
            "operationId": "upsertContacts",
            "summary": "Upsert up to 1,000 contacts, all or nothing",
            "description": "admin, manager, sales. Every problem is reported as contacts[i].field; nothing is "
            "written unless every contact is valid.",
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": openapi.json_body({
                "type": "object",
                "required": ["contacts"],
                "additionalProperties": False,
                "properties": {"contacts": {
                    "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                    "items": {**OPENAPI_COMPONENTS["ContactInput"], "required": ["external_id"]},
                }},
            }),
            "responses": openapi.secured({
                "200": openapi.json_response("written", {
                    "type": "object",
                    "required": ["created", "updated", "contacts"],
                    "properties": {
                        "created": {"type": "integer"}, "updated": {"type": "integer"},
                        "contacts": {"type": "array", "items": {
                            "type": "object", "required": ["external_id", "created"],
                            "properties": {"external_id": {"type": "string"}, "created": {"type": "boolean"}},
                        }},
                    },
                }),
                "409": {"$ref": "#/components/responses/Conflict"},
            }, body=True),
        }
    },
    "/api/v1/contacts/{external_id}": {
        "parameters": [_EXTERNAL_ID],
        "get": {
            "operationId": "getContact",
            "summary": "A contact with its addresses and current consent",
            "description": "Any role.",
            "responses": openapi.secured({"200": openapi.json_response("the contact", _CONTACT_REF)}, not_found=True),
        },
        "put": {
            "operationId": "putContact",
            "summary": "Create or update one contact",
            "description": "admin, manager, sales. A null or absent field keeps the stored value.",
            "requestBody": openapi.json_body({"$ref": "#/components/schemas/ContactInput"}),
            "responses": openapi.secured({
                "200": openapi.json_response("updated", _CONTACT_REF),
                "201": openapi.json_response("created", _CONTACT_REF),
            }, body=True),
        },
    },
    "/api/v1/contacts/{external_id}/explain": {
        "get": {
            "operationId": "explainContact",
            "summary": "Why a message would or would not reach the contact: every rule's verdict",
            "description": "Any role.",
            "parameters": [
                _EXTERNAL_ID,
                {"name": "channel", "in": "query", "required": True, "schema": {"type": "string", "enum": list(CHANNELS)}},
                {"name": "class", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}},
                {"name": "party", "in": "query", "schema": {"type": "string", "enum": list(PARTIES), "default": "first"}},
                {"name": "kind", "in": "query", "schema": {"type": "string", "enum": list(KINDS), "default": "bulk"}},
                {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"}},
            ],
            "responses": openapi.secured({"200": openapi.json_response(
                "the explanation", {"$ref": "#/components/schemas/ContactExplanation"}
            )}, not_found=True),
        }
    },
}
