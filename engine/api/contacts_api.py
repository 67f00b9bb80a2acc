"""GET /api/v1/contacts/{external_id}/explain: why a contact would (not) get a message.

Every rule of the gating table with its verdict and the ledger events it used
(engine.gate.explain.explain_contact), for the caller's tenant only: a contact of another tenant
is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

import json

from aiohttp import web

from engine.api.auth import Caller, Permission, requires
from engine.api.problems import input_problem
from engine.api.requests import at_param, choice_param
from engine.api.services import services
from engine.errors import InputError
from engine.gate.explain import explain_contact

__all__ = ["routes"]

routes = web.RouteTableDef()

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
