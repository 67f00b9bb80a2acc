"""Individual replies over the API (docs/api.md, "Individual replies"): a salesperson's
one-to-one message to a contact, gated as *individual* exactly as `consentry send
individual` is (engine/send/individual.py does both).

    POST /api/v1/contacts/{external_id}/replies
         {"channel": "sms"|"email", "body": "...", "subject": "..." (email), "from": "jo",
          "class": "transactional"}

Answers 201 with the decision (`send`), the address and the provider's id when the reply
went out; 200 with `decision: suppress` and the gating reason when a rule that binds
individual messages held it back (a block, a STOP, the SMS opt-in wait): a refusal is an
answer, not an error. Either way a delivery row records it.

`Idempotency-Key` is strongly advised: a reply leaves over the wire, outside any database
transaction, so the key is stored as "in progress" (409 to anyone repeating it meanwhile)
and committed *before* the send, then settled with the answer. A process that dies between
the two leaves the key at 409: the reply may or may not have gone, and the contact's
deliveries say which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from engine.api import idempotency
from engine.api.auth import Caller, Permission, requires
from engine.api.problems import problem
from engine.api.requests import json_object
from engine.api.services import Services, services
from engine.errors import InputError
from engine.send.individual import NotSent, send_individual

__all__ = ["OPENAPI_COMPONENTS", "OPENAPI_PATHS", "ReplyOutcome", "routes", "send_reply"]

routes = web.RouteTableDef()
PATH = "/api/v1/contacts/{external_id}/replies"
_FIELDS = {"channel", "body", "subject", "from", "class"}


def _string(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InputError("is required", field=name)
        return None
    if not isinstance(value, str):
        raise InputError("must be a string", field=name)
    return value


@routes.post(PATH)
@requires(Permission.SEND_REPLIES)
async def reply(request: web.Request, caller: Caller) -> web.Response:
    shared = services(request)
    external_id = request.match_info["external_id"]
    key = idempotency.request_key(request)
    body = await json_object(request)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InputError(f"unknown field (expected {', '.join(sorted(_FIELDS))})", field=unknown[0])
    channel = _string(body, "channel", required=True)
    if channel not in ("email", "sms"):
        raise InputError(f"{channel!r} is not email or sms", field="channel")
    text = _string(body, "body", required=True)
    subject, sender, class_code = _string(body, "subject"), _string(body, "from"), _string(body, "class")
    digest = idempotency.request_hash(request, await request.read()) if key is not None else ""
    outcome = await send_reply(shared, caller, external_id, channel, text or "", subject, sender, class_code, key, digest)
    if outcome.conflict is not None:
        return problem(409, outcome.conflict)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return web.json_response(outcome.answer, status=outcome.status, headers=headers)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What a reply came to: the status and body the API answers with; `replayed` when an
    earlier request with the same key answered it (nothing sent again); `conflict` when a
    request with the key is in flight (nothing sent)."""

    status: int
    answer: dict[str, Any]
    replayed: bool = False
    conflict: str | None = None


async def send_reply(
    shared: Services, caller: Caller, external_id: str, channel: str, text: str, subject: str | None,
    sender: str | None, class_code: str | None, key: str | None, digest: str,
) -> ReplyOutcome:
    """Send one reply at most once per idempotency `key` (the API's header, the desk's
    one-time form token): the key is committed as "in progress" before the send and settled
    with the answer after it. InputError for a bad field (named as the API's body fields)."""
    if key is not None:
        try:
            async with shared.engine.begin() as conn:
                stored = await idempotency.stored(conn, caller.tenant_id, key, digest)
                if stored is not None:
                    return ReplyOutcome(stored[0], json.loads(stored[1]), replayed=True)
                await idempotency.remember(conn, caller.tenant_id, key, digest, 409, {
                    "title": "in progress", "status": 409,
                    "detail": "a reply with this Idempotency-Key is being sent or was interrupted; see the contact's deliveries",
                }, shared.clock())
        except IntegrityError:
            return ReplyOutcome(409, {}, conflict=f"another request with this {idempotency.HEADER} is being processed")
    status, answer = await _send(shared, caller, external_id, channel, text, subject, sender, class_code)
    if key is not None:
        async with shared.engine.begin() as conn:
            await idempotency.settle(conn, caller.tenant_id, key, status, answer)
    return ReplyOutcome(status, answer)


async def _send(shared: Services, caller: Caller, external_id: str, channel: str, text: str, subject: str | None,
                sender: str | None, class_code: str | None) -> tuple[int, dict[str, Any]]:
    try:
        result = await send_individual(
            shared.engine, shared.settings, caller.tenant_code, external_id, channel, text, subject,
            sender, class_code, clock=shared.clock,
        )
    except NotSent as exc:
        return 200, {"external_id": external_id, "channel": channel, "decision": "suppress", "reason": exc.reason,
                     "address": None, "provider_id": None, "segments": None}
    except InputError as exc:
        # send_individual names its CLI options; the API's fields are the body's.
        field = {"--body": "body", "--subject": "subject", "--from": "from", "--class": "class"}.get(exc.field or "", exc.field)
        raise InputError(exc.message, field=field) from None
    return 201, {"external_id": external_id, "channel": channel, "decision": "send", "reason": None,
                 "address": result.address, "provider_id": result.provider_id, "segments": result.segments}


_NULLABLE = {"type": ["string", "null"]}
OPENAPI_COMPONENTS: dict[str, dict[str, Any]] = {
    "ReplyInput": {
        "type": "object", "additionalProperties": False, "required": ["channel", "body"],
        "properties": {
            "channel": {"type": "string", "enum": ["email", "sms"]},
            "body": {"type": "string", "description": "the salesperson's text, sent as it is (never a template)"},
            "subject": {"type": "string", "description": "required for email"},
            "from": {"type": "string", "description": "a person of tenant.yaml senders.people (docs/sending.md)"},
            "class": {"type": "string", "description": "default: the first exempt class of the policy"},
        },
    },
    "Reply": {
        "type": "object",
        "required": ["external_id", "channel", "decision", "reason", "address", "provider_id", "segments"],
        "properties": {
            "external_id": {"type": "string"}, "channel": {"type": "string"},
            "decision": {"type": "string", "enum": ["send", "suppress"]},
            "reason": {**_NULLABLE, "description": "the gating reason when suppressed (do_not_contact, ...)"},
            "address": _NULLABLE, "provider_id": _NULLABLE, "segments": {"type": ["integer", "null"]},
        },
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    PATH: {"post": {
        "operationId": "sendReply", "summary": "A one-to-one reply, gated as individual", "tags": ["contacts"],
        "parameters": [
            {"name": "external_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReplyInput"}}}},
        "responses": {
            "201": _json("Reply", "Sent: the address and the provider's id."),
            "200": _json("Reply", "Held back by a rule that binds individual messages; the reason says which."),
            "401": {"description": "No valid API key."},
            "403": {"description": "The key's role may not send replies."},
            "404": {"description": "No such contact in the key's tenant."},
            "409": {"description": "A request with this Idempotency-Key is in progress, or was interrupted."},
            "422": {"description": "Invalid body; each error names its field."},
        },
    }},
}
