"""A campaign's deliveries, streamed: `campaign export` over HTTP.

    GET /api/v1/campaigns/{code}/deliveries?format=csv|ndjson&decision=&reason=&state=

The columns are `campaign export`'s (engine/send/report.py EXPORT_COLUMNS), in CSV with a
header line or as one JSON object per line. Rows are read a page at a time, keyset by id,
and written as they come (chunked transfer): memory stays flat for a million recipients,
and a client that stops reading stops the export.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.api.auth import Caller, Permission, requires
from engine.api.requests import choice_param
from engine.api.services import services
from engine.db.states import DeliveryState
from engine.errors import InputError
from engine.send.launch import CampaignRecord, find_campaign
from engine.send.report import EXPORT_COLUMNS, ExportFilter, export_rows
from gating import DecisionKind

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "routes", "stream_deliveries"]

routes = web.RouteTableDef()

FORMATS = ("csv", "ndjson")
_DECISIONS = tuple(str(d) for d in DecisionKind)
_STATES = tuple(str(s) for s in DeliveryState)
# Rows per database read: small enough to keep a page's memory low, large enough that the
# query count stays small.
PAGE = 2000


@routes.get("/api/v1/campaigns/{code}/deliveries")
@requires(Permission.READ_CAMPAIGNS)
async def deliveries(request: web.Request, caller: Caller) -> web.StreamResponse:
    shared = services(request)
    fmt = choice_param(request, "format", FORMATS, default="csv")
    where = ExportFilter(
        decision=_optional_choice(request, "decision", _DECISIONS),
        reason=_reason(request),
        state=_optional_choice(request, "state", _STATES),
    )
    code = request.match_info["code"]
    async with shared.engine.connect() as conn:
        record = await find_campaign(conn, caller.tenant_id, code)
    if record is None:
        raise web.HTTPNotFound(text=f"campaign {code!r} not found")
    return await stream_deliveries(request, shared.engine, record, where, fmt)


async def stream_deliveries(
    request: web.Request, engine: AsyncEngine, record: CampaignRecord, where: ExportFilter, fmt: str = "csv"
) -> web.StreamResponse:
    """The export as a chunked download, a page of rows at a time (the API's and the desk's)."""
    content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = web.StreamResponse(headers={
        "Content-Type": f"{content_type}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{record.code}-deliveries.{fmt}"',
    })
    response.enable_chunked_encoding()
    await response.prepare(request)
    if fmt == "csv":
        await response.write(_csv([EXPORT_COLUMNS]))
    async for rows in export_rows(engine, record, where, page=PAGE):
        await response.write(_csv(rows) if fmt == "csv" else _ndjson(rows))
    await response.write_eof()
    return response


def _csv(rows: list[tuple[Any, ...]] | list[tuple[str, ...]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _ndjson(rows: list[tuple[Any, ...]]) -> bytes:
    # Empty CSV cells are null here: JSON can say "none" where CSV can only leave it blank.
    return "".join(
        json.dumps({k: (None if v == "" else v) for k, v in zip(EXPORT_COLUMNS, row, strict=True)}) + "\n" for row in rows
    ).encode("utf-8")


def _optional_choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    if not request.query.get(name):
        return None
    return choice_param(request, name, allowed)


def _reason(request: web.Request) -> str | None:
    value = request.query.get("reason") or None
    if value is not None and len(value) > 100:
        raise InputError("at most 100 characters", field="reason")
    return value


_CODE = {"name": "code", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}}
_PROBLEM = {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CampaignProblem"}}}}

OPENAPI_COMPONENTS: dict[str, dict] = {
    "CampaignDelivery": {
        "type": "object",
        "description": "One NDJSON line: `campaign export`'s columns (docs/api.md); empty values are null.",
        "required": list(EXPORT_COLUMNS),
        "properties": {
            **{column: {"type": ["string", "null"]} for column in EXPORT_COLUMNS},
            "attempts": {"type": "integer"}, "soft_bounces": {"type": "integer"},
            "state": {"type": "string", "enum": list(_STATES)},
            "decision": {"type": "string", "enum": list(_DECISIONS)},
        },
    },
}

OPENAPI_PATHS: dict[str, dict] = {
    "/api/v1/campaigns/{code}/deliveries": {"get": {
        "operationId": "exportCampaignDeliveries",
        "summary": "Every delivery of a campaign, streamed as CSV or NDJSON",
        "tags": ["campaigns"],
        "parameters": [
            _CODE,
            {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS), "default": "csv"}},
            {"name": "decision", "in": "query", "schema": {"type": "string", "enum": list(_DECISIONS)}},
            {"name": "reason", "in": "query", "schema": {"type": "string", "maxLength": 100},
             "description": "A reason code (gating's, or `campaign_cancelled`, `frequency_capped`)."},
            {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(_STATES)}},
        ],
        "responses": {
            "200": {"description": "The rows, oldest first.", "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/CampaignDelivery"}},
            }},
            "401": {**_PROBLEM, "description": "No valid API key."},
            "403": {**_PROBLEM, "description": "The key's role may not read campaigns."},
            "404": {**_PROBLEM, "description": "No campaign of this code in the key's tenant."},
            "422": {"description": "A query parameter is invalid.", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CampaignValidationProblem"}}}},
        },
    }},
}
