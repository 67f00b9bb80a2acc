"""The preference centre: GET and POST /p/{token}.

One tick box per class of the tenant's policy that needs consent (exempt classes are not
choices), for the link's channel, ticked when the ledger says the person currently gets
first-party messages of that class there (engine/api/choices.py). Saving records, for each
class whose box changed, a `grant` (party `first`) or a `revoke` (party `*`) of that class
on that channel at the address, method `preference_centre`, actor `recipient`. Unchanged
boxes record nothing, so saving twice records nothing the second time.

The form (templates/pages/preferences.html) posts one `channels` value per ticked box;
the values are class codes here (`classes` is accepted too).
"""

from __future__ import annotations

from aiohttp import web

from engine.api.choices import (
    choosable_classes,
    class_states,
    load_choices,
    locked_recipient,
    record,
)
from engine.api.html import link_not_found, page_response
from engine.api.recipients import Recipient, recipient_for_token
from engine.api.services import services

__all__ = ["routes"]

routes = web.RouteTableDef()

_WHAT = {"email": "emails", "sms": "text messages", "voice": "calls"}


def _label(class_code: str, channel: str) -> str:
    return f"{class_code.replace('_', ' ').replace('-', ' ').capitalize()} {_WHAT.get(channel, 'messages')}"


def _page(recipient: Recipient, states: dict[str, bool], saved: bool) -> web.Response:
    return page_response(
        "preferences",
        {
            "tenant_name": recipient.tenant.name,
            "first_name": recipient.first_name or "",
            "channels": [
                {"code": code, "label": _label(code, recipient.channel), "subscribed": subscribed}
                for code, subscribed in states.items()
            ],
            "saved": saved,
        },
    )


async def _recipient(request: web.Request) -> Recipient | None:
    shared = services(request)
    async with shared.engine.connect() as conn:
        return await recipient_for_token(conn, shared.token_secrets, request.match_info["token"])


@routes.get("/p/{token}")
async def show(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    shared = services(request)
    async with shared.engine.connect() as conn:
        events = await load_choices(conn, recipient, shared.clock())
    return _page(recipient, class_states(events, choosable_classes(recipient.tenant.policy)), saved=False)


@routes.post("/p/{token}")
async def save(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    form = await request.post()
    ticked = {str(value) for value in (*form.getall("channels", ()), *form.getall("classes", ()))}
    shared = services(request)
    now = shared.clock()
    classes = choosable_classes(recipient.tenant.policy)
    async with locked_recipient(shared.engine, recipient) as conn:
        before = class_states(await load_choices(conn, recipient, now), classes)
        events = [
            _choice(recipient, code, wanted, now)
            for code, subscribed in before.items()
            if (wanted := code in ticked) != subscribed
        ]
        counts = await record(conn, recipient.tenant.id, events, now)
    if counts:
        shared.instruments.record_ledger_events(recipient.tenant.code, counts)
    after = {code: code in ticked for code in before}
    return _page(recipient, after, saved=True)


def _choice(recipient: Recipient, class_code: str, wanted: bool, now: int) -> dict[str, object]:
    return {
        "contact_id": recipient.contact_id,
        "action": "grant" if wanted else "revoke",
        "channel": recipient.channel,
        "class_code": class_code,
        # A grant here is consent to hear from us; the page asks nothing about third
        # parties. A revoke covers them too: "no marketing" means none, from anyone.
        "party": "first" if wanted else "*",
        "address": recipient.address,
        "method": "preference_centre",
        "occurred_at_us": now,
        "actor": "recipient",
    }
