"""Twilio's webhooks as the SMS capture server sends them: form fields, signed.

Status callbacks and inbound-message webhooks are `application/x-www-form-urlencoded`
POSTs carrying `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the account's Auth Token,
of the URL followed by every parameter name and value in name order. It is computed with
the official `twilio.request_validator.RequestValidator`, so what validates here validates
against Twilio, and the receiving side can check it with the same class.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ElementTree
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from engine.capture import twilio_api as api

log = logging.getLogger(__name__)

# Twilio gives up on a webhook after 15 s.
WEBHOOK_TIMEOUT_S = 15.0


class WebhookSender:
    """Posts signed webhooks through one aiohttp session (opened by `start`)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, params: dict[str, str], auth_token: str) -> dict[str, Any]:
        """POST `params` to `url`, signed; returns `http_status` and `body`, or `error`."""
        if self._session is None:
            raise RuntimeError("WebhookSender is not started")
        signature = RequestValidator(auth_token).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        # How long the receiver took (with the wait for one of the session's connections):
        # what a benchmark of the receiving side reads (bench/callbacks_during_send.py).
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=params, headers=headers) as response:
                body = await response.text()
                return {"http_status": response.status, "body": body, "elapsed_ms": _ms_since(started)}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # A receiver that is down is the receiver's problem: Twilio logs it and moves on.
            reason = failure_reason(exc)
            log.warning("webhook %s failed: %s", url, reason)
            return {"error": reason, "elapsed_ms": _ms_since(started)}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def failure_reason(exc: BaseException) -> str:
    """`Class: message` of a failed POST, never empty: a timeout carries no message of its
    own (aiohttp raises a bare TimeoutError when the total time runs out)."""
    message = str(exc).strip()
    if not message and isinstance(exc, TimeoutError):
        message = f"no answer within {WEBHOOK_TIMEOUT_S:g} s"
    return f"{type(exc).__name__}: {message or 'no message'}"


def status_params(message: api.Message) -> dict[str, str]:
    """The form fields of a status callback for `message` in its current status."""
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": api.API_VERSION,
        "From": message.from_,
        "MessageSid": message.sid,
        "MessageStatus": message.status,
        "SmsSid": message.sid,
        "SmsStatus": message.status,
        "To": message.to,
    }
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if message.error_code:
        params["ErrorCode"] = message.error_code
    return params


def inbound_params(account_sid: str, sid: str, from_: str, to: str, body: str) -> dict[str, str]:
    """The form fields of the webhook for a text received from handset `from_`."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": api.API_VERSION,
        "Body": body,
        "From": from_,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": str(api.count_segments(body)),
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": to,
    }


def twiml_messages(text: str) -> list[str]:
    """The bodies of `<Message>` verbs in a TwiML answer (what Twilio would text back)."""
    if "<Message" not in text:
        return []
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return []
    bodies = []
    for element in root.iter("Message"):
        nested = element.find("Body")
        content = (nested.text if nested is not None else element.text) or ""
        if content.strip():
            bodies.append(content.strip())
    return bodies
