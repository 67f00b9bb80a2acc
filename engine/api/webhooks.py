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
carrier) is also a `block` of sms on the number, cause `carrier_unsubscribed`
(engine/api/status_updates.py). Other statuses change nothing and touch no database.

What a text or a status records is written by the application's webhook writer
(engine/api/webhook_writer.py), which group-commits: many requests share one transaction,
and each is answered once its own write is committed, so callbacks keep up with a campaign
sending at full rate.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from engine.api.inbound_records import InboundText
from engine.api.keywords import Keyword, classify
from engine.api.services import Services, services
from engine.api.status_updates import BLOCKING_ERRORS, FAILED_STATUSES, StatusReport
from engine.api.webhook_writer import WebhookWriter

try:  # twilio >= 9.x names the signing algorithm of SharedKey webhooks in a header.
    from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, get_signature_algorithm
except ImportError:  # pragma: no cover - older twilio: the auth-token signature only
    SIGNATURE_SETTINGS_HEADER, get_signature_algorithm = None, None

__all__ = ["BLOCKING_ERRORS", "REPLIES", "WRITER", "routes", "signed_url"]

routes = web.RouteTableDef()
# The application's webhook writer (engine/api/app.py starts and stops it).
WRITER = web.AppKey("consentry_webhook_writer", WebhookWriter)
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


def _no_tenant(code: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=f"no tenant {code!r}")


@routes.post("/webhooks/twilio/{tenant}/inbound")
async def inbound(request: web.Request) -> web.Response:
    shared = services(request)
    form = await _signed_form(request, shared)
    if form is None:
        raise web.HTTPForbidden(text="invalid Twilio signature")
    code = request.match_info["tenant"]
    body = str(form.get("Body", ""))
    keyword = classify(body)
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    # Recorded (a revocation above all) before the answer: a 200 means it is committed.
    tenant = await request.app[WRITER].inbound(InboundText(code, keyword, str(form.get("From", "")), body, sid))
    if tenant is None:
        raise _no_tenant(code)
    reply = REPLIES[keyword]
    return _twiml(reply.format(name=tenant.name) if reply else None)


@routes.post("/webhooks/twilio/{tenant}/status")
async def status_callback(request: web.Request) -> web.Response:
    shared = services(request)
    form = await _signed_form(request, shared)
    if form is None:
        raise web.HTTPForbidden(text="invalid Twilio signature")
    code = request.match_info["tenant"]
    writer = request.app[WRITER]
    tenant_id = await writer.tenant_id(code)
    if tenant_id is None:
        raise _no_tenant(code)
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if sid and status in FAILED_STATUSES:
        error_code = str(form.get("ErrorCode") or "").strip()
        await writer.status(StatusReport(tenant_id, code, sid, status, error_code, shared.clock()))
    return web.Response(status=204)
