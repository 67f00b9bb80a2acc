"""Twilio webhooks: inbound texts (keywords) and delivery status callbacks.

The tenant is part of the URL (`/webhooks/twilio/{tenant}/inbound`, `.../status`): it is
what the tenant's Twilio number or Messaging Service is configured with, so a STOP is
recorded for the tenant whose number received it.

Every request must carry a valid `X-Twilio-Signature`: Twilio's HMAC, with the account's
auth token, of the URL it requested and its POST parameters. The URL is rebuilt from
`CONSENTRY_PUBLIC_URL` + the request path and query, not from the Host header, which a
proxy rewrites and an attacker chooses. A missing or wrong signature → 403, nothing read
further, nothing recorded.

Inbound (docs/api.md, "SMS keywords"): engine/api/keywords.py classifies the body: a whole
message that is a keyword (case and punctuation ignored), else a revocation in plain
language (an opt-out word anywhere, or "please don't text me", "take me off your list").

- A revocation (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT, or any
  phrasing in the table of keywords.py): a `block` of channel sms on the sender's number
  (E.164) for every contact of the tenant with that number, method `sms_keyword`, cause
  `sms_stop`, note = the message; the one reply confirms it and says how to opt back in.
- START, UNSTOP: an `unblock` of sms on that number; YES: the `unblock` and a `grant` of
  sms, class `*`, party `first` (the express consent the SMS opt-in request asks for).
- HELP, INFO: nothing recorded; the reply says who we are and how to stop.
- Anything else: nothing recorded, an empty reply (the conversation is the salesperson's).

Status callbacks: `undelivered` / `failed` turn the delivery (found by MessageSid, within
the tenant) `failed` with the error; error 21610 (the recipient replied STOP to the
carrier) is also a `block` of sms on the number, cause `carrier_unsubscribed`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from engine.api.choices import record
from engine.api.keywords import Keyword, classify
from engine.api.services import Services, services
from engine.db.models import Delivery, InboundMessage
from engine.db.states import DeliveryState
from engine.db.tenants import TenantRecord, load_tenant
from engine.errors import NotFoundError
from engine.imports import AddressError, contact_ids_for_address, normalize_phone
from engine.webhooks.outbox import enqueue_delivery_failed

try:  # twilio >= 9.x names the signing algorithm of SharedKey webhooks in a header.
    from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, get_signature_algorithm
except ImportError:  # pragma: no cover - older twilio: the auth-token signature only
    SIGNATURE_SETTINGS_HEADER, get_signature_algorithm = None, None

__all__ = ["BLOCKING_ERRORS", "REPLIES", "routes", "signed_url"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_deliveries = Delivery.__table__
_inbound = InboundMessage.__table__
# Twilio error codes that say the number must not be texted again, and the cause recorded.
BLOCKING_ERRORS = {"21610": "carrier_unsubscribed"}
# The answer to each kind of inbound message ({name}: the tenant's name); carriers require
# one to STOP and HELP. None: an empty <Response/>, nothing is texted back. The answer to a
# revocation is the only text it gets: no marketing, and how to opt back in (the FCC rule
# allows one confirmation, sent within five minutes).
REPLIES: dict[Keyword, str | None] = {
    Keyword.OPT_OUT: (
        "You have been unsubscribed and will receive no more messages from {name}. Reply START to resubscribe."
    ),
    Keyword.RESUBSCRIBE: "You have been resubscribed to messages from {name}. Reply STOP to opt out.",
    Keyword.CONFIRM: "Thank you! {name} may now text you. Reply STOP to opt out at any time.",
    Keyword.HELP: "{name}: reply STOP to stop receiving texts, START to resubscribe. Msg & data rates may apply.",
    Keyword.NONE: None,
}
_RECORDED = frozenset({Keyword.OPT_OUT, Keyword.RESUBSCRIBE, Keyword.CONFIRM})
_FAILED_STATUSES = frozenset({"undelivered", "failed"})


def signed_url(settings_public_url: str, request: web.Request) -> str:
    """The URL Twilio signed: the public base and the path and query as requested."""
    return settings_public_url.rstrip("/") + request.raw_path


def _twiml(message: str | None = None) -> web.Response:
    response = MessagingResponse()
    if message:
        response.message(message)
    return web.Response(text=str(response), content_type="application/xml", charset="utf-8")


async def _signed_form(request: web.Request, shared: Services) -> Mapping[str, object] | None:
    """The POST parameters, if the request's signature verifies."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return None
    params = await request.post()
    algorithm = None
    if get_signature_algorithm is not None:
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER, ""))
    validator = RequestValidator(shared.settings.twilio_auth_token)
    # Twilio signs the URL it posted to: the public one, or the callback base the senders
    # gave it for status callbacks (CONSENTRY_CALLBACK_URL, docs/operations.md).
    bases = dict.fromkeys((shared.settings.public_url, shared.settings.status_callback_base))
    if not any(validator.validate(signed_url(base, request), params, signature, algorithm) for base in bases):
        return None
    return params


async def _tenant(shared: Services, code: str) -> TenantRecord:
    async with shared.engine.connect() as conn:
        try:
            return await load_tenant(conn, code)
        except NotFoundError:
            raise web.HTTPNotFound(text=f"no tenant {code!r}") from None


@routes.post("/webhooks/twilio/{tenant}/inbound")
async def inbound(request: web.Request) -> web.Response:
    shared = services(request)
    form = await _signed_form(request, shared)
    if form is None:
        raise web.HTTPForbidden(text="invalid Twilio signature")
    tenant = await _tenant(shared, request.match_info["tenant"])
    body = str(form.get("Body", ""))
    keyword = classify(body)
    if keyword in _RECORDED:
        sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
        await _record_keyword(shared, tenant, keyword, str(form.get("From", "")), body, sid)
    reply = REPLIES[keyword]
    return _twiml(reply.format(name=tenant.name) if reply else None)


async def _record_keyword(
    shared: Services, tenant: TenantRecord, keyword: Keyword, sender: str, body: str, sid: str
) -> None:
    """Record what the text asks for, once per MessageSid. A replay (Twilio retrying a
    webhook whose answer it lost, or someone resending a captured signed request) records
    nothing; the reply still goes out, since Twilio may never have had the first one."""
    try:
        number, _valid, _zones = normalize_phone(sender, tenant.policy.country)
    except AddressError:
        log.warning("inbound %s for tenant %s from an unreadable number %r", keyword.value, tenant.code, sender)
        return
    now = shared.clock()
    async with shared.engine.begin() as conn:
        if sid and not await _first_sight(conn, tenant.id, sid, now):
            log.info("inbound %s for tenant %s: MessageSid %s already recorded", keyword.value, tenant.code, sid)
            return
        contact_ids = await contact_ids_for_address(conn, tenant.id, "phone", number)
        events = [event for contact_id in contact_ids for event in _keyword_events(keyword, contact_id, number, body, now)]
        counts = await record(conn, tenant.id, events, now)
    if counts:
        shared.instruments.record_ledger_events(tenant.code, counts)
    if not contact_ids:
        # The ledger is per contact: a number no contact has cannot be recorded. The reply
        # still goes out, as carriers require.
        log.warning("inbound %s for tenant %s from %s, which no contact has", keyword.value, tenant.code, number)


async def _first_sight(conn: AsyncConnection, tenant_id: int, sid: str, now: int) -> bool:
    """Note a MessageSid as acted on; False when it already was (the unique key decides,
    so two concurrent deliveries of one webhook cannot both record)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = await conn.execute(
        dialect.insert(_inbound).values(tenant_id=tenant_id, message_sid=sid[:64], received_at_us=now)
        .on_conflict_do_nothing(index_elements=["tenant_id", "message_sid"])
        .returning(_inbound.c.id)
    )
    return inserted.first() is not None


def _keyword_events(keyword: Keyword, contact_id: int, number: str, body: str, now: int) -> list[dict[str, object]]:
    common = {
        "contact_id": contact_id,
        "channel": "sms",
        "address": number,
        "method": "sms_keyword",
        "occurred_at_us": now,
        "actor": "recipient",
        "note": body[:500],
    }
    if keyword is Keyword.OPT_OUT:
        return [{**common, "action": "block", "cause": "sms_stop"}]
    events = [{**common, "action": "unblock"}]
    if keyword is Keyword.CONFIRM:
        events.append({**common, "action": "grant", "class_code": "*", "party": "first"})
    return events


@routes.post("/webhooks/twilio/{tenant}/status")
async def status_callback(request: web.Request) -> web.Response:
    shared = services(request)
    form = await _signed_form(request, shared)
    if form is None:
        raise web.HTTPForbidden(text="invalid Twilio signature")
    tenant = await _tenant(shared, request.match_info["tenant"])
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    error_code = str(form.get("ErrorCode") or "").strip()
    if not sid or status not in _FAILED_STATUSES:
        return web.Response(status=204)
    now = shared.clock()
    error = f"twilio {status}" + (f" {error_code}" if error_code else "")
    cause = BLOCKING_ERRORS.get(error_code)
    counts = None
    async with shared.engine.begin() as conn:
        found = (
            await conn.execute(
                select(_deliveries.c.id, _deliveries.c.contact_id, _deliveries.c.address, _deliveries.c.state)
                .where(_deliveries.c.tenant_id == tenant.id, _deliveries.c.provider_id == sid)
                .with_for_update()
            )
        ).all()
        # Only deliveries failing now: Twilio retries a callback it got no answer to, and
        # the retry must not record a second block.
        failing = [row for row in found if row.state != DeliveryState.FAILED]
        if failing:
            await conn.execute(
                update(_deliveries)
                .where(_deliveries.c.id.in_([row.id for row in failing]))
                .values(state=DeliveryState.FAILED, error=error, updated_at_us=now)
            )
            await enqueue_delivery_failed(conn, tenant.id, [row.id for row in failing], now)
        if cause is not None:
            events = [
                {
                    "contact_id": row.contact_id, "action": "block", "channel": "sms", "address": row.address,
                    "method": "status_callback", "occurred_at_us": now, "actor": "twilio", "cause": cause,
                    "note": f"{error} (MessageSid {sid})",
                }
                for row in failing
            ]
            counts = await record(conn, tenant.id, events, now)
    if not found:
        log.warning("status callback for tenant %s: no delivery with MessageSid %s", tenant.code, sid)
    if counts:
        shared.instruments.record_ledger_events(tenant.code, counts)
    return web.Response(status=204)
