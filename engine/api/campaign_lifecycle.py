"""A campaign's life over the API: create, check, launch, pause, resume, cancel.

    POST /api/v1/campaigns                 create (draft) from a campaign.yaml as JSON
    POST /api/v1/campaigns/{code}/check    gate the recorded definition: counts, nothing recorded
    POST /api/v1/campaigns/{code}/launch   draft → running, and send it (engine/api/campaign_runs.py)
    POST /api/v1/campaigns/{code}/pause    → paused: every runner stops within one claim renewal
    POST /api/v1/campaigns/{code}/resume   paused (or incomplete, waiting) → running, and send the rest
    POST /api/v1/campaigns/{code}/cancel   → cancelled: final; open rows suppressed `campaign_cancelled`

The status is the database's (`campaigns.status`), changed by one conditional UPDATE per
request, so two requests racing cannot both win a transition; runners read it on every
claim and every renewal (engine/send/claims.py). Templates are named, as in campaign.yaml,
but only the built-in ones are found: the API never reads a file of the server's.
Creating is idempotent by the campaign code itself (the same definition again → 200 with
the campaign; a different one → 409); with an `Idempotency-Key`, a repeat also gets the
first answer again, status included (`Idempotent-Replayed: true`; engine/api/idempotency.py).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.definition import CampaignDefinition, parse_campaign
from engine.api import idempotency
from engine.api.auth import Caller, Permission, requires
from engine.api.campaign_runs import CampaignRuns, runs
from engine.api.requests import at_param, json_object, own_tenant
from engine.api.services import Services, services
from engine.db import deliveries as ledger
from engine.db.models import Campaign
from engine.db.states import CampaignStatus
from engine.db.tenants import load_tenant
from engine.errors import ConflictError, InputError
from engine.gate.check import check_campaign
from engine.send.launch import CampaignRecord, find_campaign
from engine.send.report import status
from engine.send.runner import launch_campaign
from engine.timeutil import iso_z

__all__ = [
    "CANCEL_FROM", "LAUNCH_FROM", "OPENAPI_COMPONENTS", "OPENAPI_PATHS", "PAUSE_FROM", "RESUME_FROM", "CampaignCodeTaken",
    "TransitionRefused", "cancel_campaign", "check_recorded", "create_campaign", "pause_campaign", "routes",
    "start_sending",
]

routes = web.RouteTableDef()
_c = Campaign.__table__
S = CampaignStatus

# Where each request may take a campaign from (anything else is a 409 naming the status).
LAUNCH_FROM = (S.DRAFT, S.RUNNING, S.INCOMPLETE, S.WAITING)
PAUSE_FROM = (S.RUNNING, S.INCOMPLETE, S.WAITING, S.PAUSED)
RESUME_FROM = (S.PAUSED, S.RUNNING, S.INCOMPLETE, S.WAITING)
CANCEL_FROM = (S.DRAFT, S.RUNNING, S.INCOMPLETE, S.WAITING, S.PAUSED, S.CANCELLED)


@routes.post("/api/v1/campaigns")
@requires(Permission.RUN_CAMPAIGNS)
async def create(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    key = idempotency.request_key(request)
    body = await json_object(request)
    if key is None:
        return await _create(shared, caller, body)
    digest = idempotency.request_hash(request, await request.read())
    async with shared.engine.connect() as conn:
        stored = await idempotency.replay(conn, caller.tenant_id, key, digest)
    if stored is not None:
        return stored
    response = await _create(shared, caller, body)
    if response.status in (200, 201):
        # After the work, in its own transaction: a crash in between leaves no key, and the
        # repeat is answered by the campaign code as above.
        with contextlib.suppress(IntegrityError):
            async with shared.engine.begin() as conn:
                await idempotency.remember(conn, caller.tenant_id, key, digest, response.status,
                                           json.loads(response.text or "null"), shared.clock())
    return response


async def _create(shared: Services, caller: Caller, body: dict[str, Any]) -> web.Response:
    record, created = await create_campaign(shared, caller, body)
    if created:
        return web.json_response(_summary(record, S.DRAFT), status=201,
                                 headers={"Location": f"/api/v1/campaigns/{record.code}/status"})
    return web.json_response(_summary(record, record.status))


async def create_campaign(shared: Services, caller: Caller, body: dict[str, Any]) -> tuple[CampaignRecord, bool]:
    """Record a draft from a campaign.yaml as a mapping (the API's body, the desk's form):
    (the campaign, whether this call created it). The same definition again is the campaign
    already there; bad input raises InputError(s) naming the field, a code taken by another
    definition ConflictError."""
    body = own_tenant(body, caller)
    template = body.get("template")
    if isinstance(template, str) and "/" in template:
        raise InputError("the API takes the name of a built-in template, not a path", field="template")
    with tempfile.TemporaryDirectory(prefix="consentry-api-") as empty:
        # An empty directory: no local templates/, so only the built-in templates are found.
        definition = parse_campaign(body, shown="campaign", directory=Path(empty))
        async with shared.engine.connect() as conn:
            existing = await find_campaign(conn, caller.tenant_id, definition.code)
        if existing is not None:
            return _same(existing, definition), False
        record, _tenant = await launch_campaign(shared.engine, definition, shared.clock, CampaignStatus.DRAFT)
    if not record.created:  # another request created it meanwhile
        return _same(record, definition), False
    return record, True


class CampaignCodeTaken(ConflictError):
    """The code names a campaign with another definition (a code names one campaign)."""


def _same(record: CampaignRecord, definition: CampaignDefinition) -> CampaignRecord:
    if record.definition.as_dict() != definition.as_dict():
        raise CampaignCodeTaken(f"campaign {record.code!r} exists with another definition (a code names one campaign)")
    return record


def _summary(record: CampaignRecord, current: CampaignStatus) -> dict[str, Any]:
    model = record.definition.model
    return {"campaign": record.code, "tenant": record.definition.tenant, "status": str(current),
            "channel": model.channel, "kind": model.kind, "class": model.class_, "template": model.template}


@routes.post("/api/v1/campaigns/{code}/check")
@requires(Permission.CHECK_CAMPAIGNS)
async def check(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    at_us = at_param(request, shared.clock())
    record = await _campaign(request, caller)
    return web.json_response(await check_recorded(shared, caller, record, at_us))


async def check_recorded(shared: Services, caller: Caller, record: CampaignRecord, at_us: int) -> dict[str, Any]:
    """The dry run of a recorded campaign: counts per decision and reason, nothing recorded."""
    async with shared.engine.connect() as conn:
        # A draft is checked under the policy of now; a launched one under the one it was launched with.
        version = None if record.status == S.DRAFT else record.policy_version
        tenant = await load_tenant(conn, caller.tenant_code, version)
    report = await check_campaign(shared.engine, record.definition, tenant, at_us, batch_size=shared.settings.batch_size)
    return {"campaign": record.code, "tenant": tenant.code, "at": iso_z(at_us), "status": str(record.status),
            **report.as_dict()}


@routes.post("/api/v1/campaigns/{code}/launch")
@requires(Permission.RUN_CAMPAIGNS)
async def launch(request: web.Request, caller: Caller) -> web.Response:
    return await _run(request, caller, "launch")


@routes.post("/api/v1/campaigns/{code}/resume")
@requires(Permission.RUN_CAMPAIGNS)
async def resume(request: web.Request, caller: Caller) -> web.Response:
    return await _run(request, caller, "resume")


async def _run(request: web.Request, caller: Caller, verb: str) -> web.Response:
    shared = services(request)
    record = await _campaign(request, caller)
    started = await start_sending(shared, runs(request), record, verb)
    body = await status(shared.engine, record)
    return web.json_response({**body, "backend": shared.settings.launch_backend, "started": started}, status=202)


async def start_sending(shared: Services, campaign_runs: CampaignRuns, record: CampaignRecord, verb: str) -> bool:
    """`launch` or `resume`: move the campaign to running (ConflictError naming its status
    when it may not) and send it as a task of this process or on arq; True if a run started
    (False: this process is sending it already and will go round once more)."""
    async with shared.engine.begin() as conn:
        await _transition(conn, record, LAUNCH_FROM if verb == "launch" else RESUME_FROM, S.RUNNING, shared.clock(), verb)
    return campaign_runs.start(record.id, record.definition.tenant, record.code)


@routes.post("/api/v1/campaigns/{code}/pause")
@requires(Permission.RUN_CAMPAIGNS)
async def pause(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    record = await _campaign(request, caller)
    await pause_campaign(shared, record)
    return web.json_response(await status(shared.engine, record))


async def pause_campaign(shared: Services, record: CampaignRecord) -> None:
    """→ paused (ConflictError when its status does not allow it)."""
    async with shared.engine.begin() as conn:
        await _transition(conn, record, PAUSE_FROM, S.PAUSED, shared.clock(), "pause")


@routes.post("/api/v1/campaigns/{code}/cancel")
@requires(Permission.RUN_CAMPAIGNS)
async def cancel(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    record = await _campaign(request, caller)
    await cancel_campaign(shared, record)
    return web.json_response(await status(shared.engine, record))


async def cancel_campaign(shared: Services, record: CampaignRecord) -> None:
    """→ cancelled, final: the open rows become suppressed `campaign_cancelled`."""
    stamp = shared.clock()
    async with shared.engine.begin() as conn:
        await _transition(conn, record, CANCEL_FROM, S.CANCELLED, stamp, "cancel")
        # Same transaction: no runner claims a row once the status is cancelled, and rows
        # a live runner holds come back within one renewal, swept by its settle.
        await ledger.cancel_open(conn, record.tenant_id, record.id, stamp)


async def _campaign(request: web.Request, caller: Caller) -> CampaignRecord:
    code = request.match_info["code"]
    async with services(request).engine.connect() as conn:
        record = await find_campaign(conn, caller.tenant_id, code)
    if record is None:
        raise web.HTTPNotFound(text=f"campaign {code!r} not found")
    return record


class TransitionRefused(ConflictError):
    """The campaign's status does not allow the request (409 over the API)."""


async def _transition(
    conn: AsyncConnection, record: CampaignRecord, allowed: Sequence[CampaignStatus], to: CampaignStatus, stamp: int,
    verb: str,
) -> None:
    """Move the campaign to `to` if its status is one of `allowed`; else TransitionRefused."""
    moved = await conn.execute(
        update(_c).where(_c.c.id == record.id, _c.c.status.in_(list(allowed))).values(status=to, updated_at_us=stamp)
    )
    if moved.rowcount:
        return
    current = (await conn.execute(select(_c.c.status).where(_c.c.id == record.id))).scalar_one()
    hint = {S.DRAFT: "launch it first", S.PAUSED: "resume it", S.FINISHED: "it has finished",
            S.CANCELLED: "it was cancelled"}.get(CampaignStatus(current), "")
    raise TransitionRefused(f"cannot {verb} campaign {record.code!r}: it is {current}" + (f" ({hint})" if hint else ""))


# -- OpenAPI ---------------------------------------------------------------------------

_CODE = {"name": "code", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100},
         "description": "The campaign's code (`campaign:` of its definition), unique per tenant."}
_AT = {"name": "at", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"},
       "description": "Gate as at this instant (ISO 8601 with an offset); default now."}
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200},
                "description": "A repeat gets the first answer again; creation is idempotent by the campaign code too."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _json(_ref("CampaignProblem"), "No valid API key."),
    "403": _json(_ref("CampaignProblem"), "The key's role may not do this."),
    "404": _json(_ref("CampaignProblem"), "No campaign of this code in the key's tenant."),
}
_CONFLICT = {"409": _json(_ref("CampaignProblem"), "The campaign's status does not allow this (named in `error`).")}
_INVALID = {"422": _json(_ref("CampaignValidationProblem"), "Invalid input; each error names its field.")}


def _action(operation: str, summary: str, ok: str, ok_status: str = "200") -> dict[str, Any]:
    return {"post": {
        "operationId": operation, "summary": summary, "tags": ["campaigns"], "parameters": [_CODE],
        "responses": {ok_status: _json(_ref("CampaignStatusReport"), ok), **_ERRORS, **_CONFLICT},
    }}


OPENAPI_COMPONENTS: dict[str, dict] = {
    # engine/api/problems.py's two shapes, under this module's names (the collector may merge them).
    "CampaignProblem": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "CampaignValidationProblem": {
        "type": "object", "required": ["errors"],
        "properties": {"errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": ["string", "null"]}, "message": {"type": "string"}},
        }}},
    },
    "CampaignDefinition": {
        "type": "object",
        "description": "A campaign.yaml as JSON (FORMATS.md, campaign.yaml): the same keys and validation. "
                       "`tenant` may be left out (the key's); `template` names a built-in template.",
        "required": ["campaign", "channel", "class", "template", "audience"],
        "properties": {
            "campaign": {"type": "string"}, "tenant": {"type": "string"},
            "channel": {"type": "string", "enum": ["email", "sms"]}, "class": {"type": "string"},
            "kind": {"type": "string"}, "party": {"type": "string"}, "template": {"type": "string"},
            "subject": {"type": "string"}, "audience": {"type": "object"}, "sender": {"type": "object"},
            "rate": {"type": "object"},
        },
        "additionalProperties": True,
    },
    "CampaignSummary": {
        "type": "object",
        "required": ["campaign", "tenant", "status", "channel", "kind", "class", "template"],
        "properties": {
            "campaign": {"type": "string"}, "tenant": {"type": "string"}, "status": _ref("CampaignLifecycleStatus"),
            "channel": {"type": "string"}, "kind": {"type": "string"}, "class": {"type": "string"},
            "template": {"type": "string"},
        },
    },
    "CampaignLifecycleStatus": {
        "type": "string", "enum": [str(s) for s in CampaignStatus],
        "description": "draft (created, not launched), running, incomplete (some left pending), waiting (only "
                       "deferred left), finished, paused (nothing is dispatched until resumed), cancelled (final).",
    },
    "CampaignStatusReport": {
        "type": "object",
        "description": "`campaign status --json`; launch and resume add `backend` and `started`.",
        "required": ["campaign", "status", "total", "states", "outcomes"],
        "properties": {
            "campaign": {"type": "string"}, "status": _ref("CampaignLifecycleStatus"), "channel": {"type": "string"},
            "kind": {"type": "string"}, "total": {"type": "integer"},
            "states": {"type": "object", "additionalProperties": {"type": "integer"}},
            "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
            "feedback": {"type": "object", "additionalProperties": {"type": "integer"}},
            "decisions": {"type": "array", "items": {"type": "object"}},
            "last_errors": {"type": "array", "items": {"type": "object"}},
            "backend": {"type": "string", "enum": ["inline", "arq"]},
            "started": {"type": "boolean", "description": "False when this server was already sending it."},
        },
    },
    "CampaignCheckReport": {
        "type": "object",
        "required": ["campaign", "tenant", "at"],
        "properties": {"campaign": {"type": "string"}, "tenant": {"type": "string"},
                       "at": {"type": "string", "format": "date-time"}, "status": _ref("CampaignLifecycleStatus")},
        "additionalProperties": True,
        "description": "The counts per decision and reason, as `campaign check --json` prints them.",
    },
}

OPENAPI_PATHS: dict[str, dict] = {
    "/api/v1/campaigns": {"post": {
        "operationId": "createCampaign", "summary": "Create a campaign (draft) from its definition", "tags": ["campaigns"],
        "parameters": [_IDEMPOTENCY],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CampaignDefinition")}}},
        "responses": {
            "201": _json(_ref("CampaignSummary"), "Created, as a draft."),
            "200": _json(_ref("CampaignSummary"), "Already created with this same definition."),
            **{k: v for k, v in _ERRORS.items() if k != "404"},
            "409": _json(_ref("CampaignProblem"), "The code names a campaign with another definition."),
            **_INVALID,
        },
    }},
    "/api/v1/campaigns/{code}/check": {"post": {
        "operationId": "checkRecordedCampaign", "summary": "Gate a recorded campaign's audience (a dry run)",
        "tags": ["campaigns"], "parameters": [_CODE, _AT],
        "responses": {"200": _json(_ref("CampaignCheckReport"), "Counts per decision and reason."), **_ERRORS, **_INVALID},
    }},
    "/api/v1/campaigns/{code}/launch": _action(
        "launchCampaign", "Launch a draft (or continue a launched campaign)", "Sending has started.", "202"),
    "/api/v1/campaigns/{code}/pause": _action(
        "pauseCampaign", "Pause: every runner stops dispatching within one claim renewal", "Paused."),
    "/api/v1/campaigns/{code}/resume": _action(
        "resumeCampaign", "Resume a paused (or incomplete, waiting) campaign", "Sending has started.", "202"),
    "/api/v1/campaigns/{code}/cancel": _action(
        "cancelCampaign", "Cancel: nothing more is sent; open rows become suppressed campaign_cancelled", "Cancelled."),
}
