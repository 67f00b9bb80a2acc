"""A salesperson's reply to a contact (seed 000: "The contact can still be sent an
individual SMS or individual Email Response"), from the desk.

    GET  /desk/contacts/{external_id}/reply    the form
    POST /desk/contacts/{external_id}/reply    step=check: the gating decision for this
                                               message (the explain table, kind individual);
                                               step=send: send it

Sending is the replies API's own path (engine/api/replies_api.py `send_reply` →
engine/send/individual.py `send_individual`): gated as an individual message, so it reaches
a customer who opted out of marketing but never a blocked address. The form carries a
one-time token made when the form was shown; it is the send's Idempotency-Key, so a double
click or a reload of the result sends once and shows the same result again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from aiohttp import web

from engine.api.auth import Permission
from engine.api.contact_views import contact_json
from engine.api.replies_api import send_reply
from engine.db.tenants import TenantRecord, load_tenant
from engine.desk.guard import DeskView, desk_view
from engine.errors import InputError, NotFoundError
from engine.gate.explain import explain_contact
from engine.send.individual import default_class
from gating import RULES

__all__ = ["routes"]

routes = web.RouteTableDef()

PATH = "/desk/contacts/{external_id}/reply"
CHANNELS = (("email", "Email"), ("sms", "Text message (SMS)"))
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")
_FAILS_WHEN = {str(rule.reason): rule.fails_when for rule in RULES}
_FIELDS = ("channel", "subject", "body", "class")


def _new_token() -> str:
    return secrets.token_urlsafe(24)


async def _contact(view: DeskView, external_id: str) -> tuple[TenantRecord, dict[str, Any]]:
    async with view.services.engine.connect() as conn:
        tenant = await load_tenant(conn, view.caller.tenant_code)
        return tenant, await contact_json(conn, tenant, external_id, view.services.clock())


def _context(tenant: TenantRecord, contact: dict[str, Any], values: dict[str, str], **more: Any) -> dict[str, Any]:
    name = " ".join(part for part in (contact["first_name"], contact["last_name"]) if part) or contact["external_id"]
    return {
        "contact": contact, "name": name, "values": values, "channels": CHANNELS,
        "classes": list(tenant.policy.classes), "errors": {}, "check": None, "result": None, "refusal": None,
        "fails_when": _FAILS_WHEN, **more,
    }


@routes.get(PATH)
@desk_view(Permission.SEND_REPLIES)
async def form(request: web.Request, view: DeskView) -> web.Response:
    try:
        tenant, contact = await _contact(view, request.match_info["external_id"])
    except NotFoundError:
        return view.page("not_found.html", {}, status=404)
    channel = request.query.get("channel", "email")
    values = {
        "channel": channel if channel in ("email", "sms") else "email", "subject": "", "body": "",
        "class": default_class(tenant.policy), "token": _new_token(),
    }
    return view.page("contact_reply.html", _context(tenant, contact, values))


@routes.post(PATH)
@desk_view(Permission.SEND_REPLIES)
async def post(request: web.Request, view: DeskView) -> web.Response:
    external_id = request.match_info["external_id"]
    try:
        tenant, contact = await _contact(view, external_id)
    except NotFoundError:
        return view.page("not_found.html", {}, status=404)
    posted = await request.post()
    values = {name: str(posted.get(name, "")) for name in (*_FIELDS, "token")}
    errors = _check_fields(tenant, values)
    if errors:
        values["token"] = values["token"] if _TOKEN.fullmatch(values["token"]) else _new_token()
        return view.page("contact_reply.html", _context(tenant, contact, values, errors=errors), status=422)
    check = await explain_contact(
        view.services.engine, view.caller.tenant_code, external_id, values["channel"], values["class"], "first",
        "individual", view.services.clock(),
    )
    if posted.get("step") != "send":
        return view.page("contact_reply.html", _context(tenant, contact, values, check=check.as_dict()))
    if not _TOKEN.fullmatch(values["token"]):
        values["token"] = _new_token()
        return view.page("contact_reply.html", _context(
            tenant, contact, values, check=check.as_dict(),
            errors={"form": "This form has no valid one-time token. Check the message again, then send."},
        ), status=422)
    # The key is per tenant (idempotency.stored); the digest ties it to this contact and
    # text, so the token of one form can never send another message.
    digest = hashlib.sha256(
        "\n".join(("desk reply", external_id, *(values[name] for name in _FIELDS))).encode()
    ).hexdigest()
    try:
        outcome = await send_reply(
            view.services, view.caller, external_id, values["channel"], values["body"],
            values["subject"] if values["channel"] == "email" else None, None, values["class"],
            f"desk-reply-{values['token']}", digest,
        )
    except InputError as exc:
        field = exc.field if exc.field in _FIELDS else "form"
        return view.page("contact_reply.html", _context(
            tenant, contact, values, check=check.as_dict(), errors={field: exc.message},
        ), status=422)
    if outcome.conflict is not None or outcome.status == 409:
        return view.page("contact_reply.html", _context(tenant, contact, values, check=check.as_dict(), errors={
            "form": "This reply is being sent, or its sending was interrupted: look at the contact's deliveries "
                    "before sending it again from a new form.",
        }), status=409)
    answer = outcome.answer
    if answer["decision"] != "send":
        return view.page("contact_reply.html", _context(
            tenant, contact, values, check=check.as_dict(), refusal=answer["reason"]
        ))
    return view.page("contact_reply.html", _context(
        tenant, contact, values, result={**answer, "replayed": outcome.replayed}
    ))


def _check_fields(tenant: TenantRecord, values: dict[str, str]) -> dict[str, str]:
    """The form's own mistakes, before anything is asked of gating (send_individual checks
    the body and subject again; these say it next to the field)."""
    errors = {}
    if values["channel"] not in ("email", "sms"):
        errors["channel"] = "Choose email or text message."
    if values["class"] not in tenant.policy.classes:
        errors["class"] = f"Choose one of: {', '.join(tenant.policy.classes)}."
    if not values["body"].strip():
        errors["body"] = "Write the message."
    if values["channel"] == "email" and not values["subject"].strip():
        errors["subject"] = "An email needs a subject."
    return errors
