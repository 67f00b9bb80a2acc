"""Reading what came back: DSN bounces (RFC 3464), ARF complaints (RFC 5965), unsubscribe
mails. Pure functions of the message; nothing here touches the database.

DSNs: `flufl.bounce` (GNU Mailman's bounce detectors) says which original recipients
failed permanently or temporarily, for RFC 3464 reports and the common non-standard
formats; the stdlib email package then reads each recipient's `Status` and
`Diagnostic-Code` from the message/delivery-status part, where there is one. A recipient
is a hard bounce only when the report says it failed with a 5.x.x status (or flufl calls it
permanent and the report gives no status); a failed 4.x.x ("gave up retrying, the server
was unreachable") says nothing bad about the address, so it is a soft bounce, like a
`delayed` one.

ARF: a multipart/report with report-type=feedback-report, whose message/feedback-report
part carries `Feedback-Type` (abuse, fraud, ...) and whose third part is the original
message or its headers. The stdlib parses it; no maintained ARF library exists for Python.
"""

from __future__ import annotations

import email
import email.message
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

__all__ = [
    "Complaint",
    "DsnRecipient",
    "complaint_of",
    "dsn_recipients",
    "embedded_return_path",
    "is_report",
    "parse",
    "sender_addresses",
    "unsubscribe_token",
]

# `unsubscribe-TOKEN` as List-Unsubscribe's mailto puts it in the Subject (engine/render).
_SUBJECT_TOKEN = re.compile(r"unsubscribe-([A-Za-z0-9_-]{16,128})")
_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One failed or delayed recipient of a bounce report."""

    address: str
    permanent: bool
    action: str  # failed | delayed (as the report says; "" for non-DSN formats)
    status: str  # e.g. 5.1.1; "" when the report gives none
    diagnostic: str

    def describe(self) -> str:
        """What the delivery row's `error` shows: `bounced 5.1.1: 550 5.1.1 user unknown`."""
        word = "bounced" if self.permanent else (self.action or "soft bounce")
        status = f" {self.status}" if self.status else ""
        detail = f": {self.diagnostic}" if self.diagnostic else ""
        return f"{word}{status}{detail}"[:500]


@dataclass(frozen=True, slots=True)
class Complaint:
    """An ARF feedback report."""

    feedback_type: str  # abuse, fraud, virus, other, not-spam, ...
    original_recipient: str | None  # often redacted by the mailbox provider
    user_agent: str


def parse(raw: bytes) -> email.message.Message:
    """The message, leniently (compat32 never raises on malformed headers or MIME)."""
    return email.message_from_bytes(raw)


def is_report(message: email.message.Message, report_type: str) -> bool:
    return message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type", "")).lower() == report_type
    )


def dsn_recipients(message: email.message.Message) -> list[DsnRecipient]:
    """Every failed or delayed recipient the report names (empty: not a bounce)."""
    temporary, permanent = all_failures(message)
    fields = _delivery_status_fields(message)
    found = []
    for raw_address in sorted(temporary | permanent):
        address = raw_address.decode("ascii", "replace")
        action, status, diagnostic = fields.get(address.lower(), ("", "", ""))
        if fields and action not in ("failed", "delayed"):
            # A standard report decides by its own fields: flufl's later, heuristic
            # detectors may read "could not be delivered" into a success notice's text.
            continue
        status_class = status[:1]
        if raw_address in permanent:
            is_permanent = status_class in ("5", "")
        else:
            is_permanent = False
        found.append(DsnRecipient(address, is_permanent, action, status, diagnostic))
    return found


def _delivery_status_fields(message: email.message.Message) -> dict[str, tuple[str, str, str]]:
    """address (lower-case) → (action, status, diagnostic) from message/delivery-status."""
    fields: dict[str, tuple[str, str, str]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks = part.get_payload()
        for block in blocks[1:] if isinstance(blocks, list) else ():  # [0] is per-message
            if not isinstance(block, email.message.Message):
                continue
            recipient = _typed_address(str(block.get("final-recipient", ""))) or _typed_address(
                str(block.get("original-recipient", "")))
            if not recipient:
                continue
            status_match = _STATUS.match(str(block.get("status", "")))
            status = ".".join(status_match.groups()) if status_match else ""
            action = str(block.get("action", "")).strip().lower().split(" ")[0]
            diagnostic = " ".join(str(block.get("diagnostic-code", "")).split())
            if ";" in diagnostic:
                diagnostic = diagnostic.split(";", 1)[1].strip()
            fields[recipient.lower()] = (action, status, diagnostic)
            original = _typed_address(str(block.get("original-recipient", "")))
            if original:  # flufl names a recipient by its Original-Recipient when given
                fields.setdefault(original.lower(), (action, status, diagnostic))
    return fields


def _typed_address(value: str) -> str:
    """`rfc822; user@example.com` → `user@example.com` (RFC 3464 address-type; value)."""
    _type, semicolon, address = value.partition(";")
    address = (address if semicolon else value).strip().strip("<>")
    return address if "@" in address else ""


def complaint_of(message: email.message.Message) -> Complaint | None:
    """The feedback report of an ARF message, or None when it is not one."""
    if not is_report(message, "feedback-report"):
        return None
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _report_fields(part)
        rcpt = fields.get("original-rcpt-to", "")
        return Complaint(
            feedback_type=fields.get("feedback-type", "").lower() or "abuse",
            original_recipient=rcpt.strip("<> ") or None,
            user_agent=fields.get("user-agent", ""),
        )
    return None


def _report_fields(part: email.message.Message) -> dict[str, str]:
    """The fields of a message/feedback-report part (the stdlib keeps it as one block)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        fields: dict[str, str] = {}
        for block in payload:
            if isinstance(block, email.message.Message):
                for key, value in block.items():
                    fields.setdefault(key.lower(), " ".join(str(value).split()))
        return fields
    text = payload if isinstance(payload, str) else ""
    return {key.lower(): " ".join(str(value).split()) for key, value in email.message_from_string(text).items()}


def embedded_return_path(message: email.message.Message) -> str | None:
    """The Return-Path of the message a report carries back (message/rfc822 or
    text/rfc822-headers): a feedback loop may send its report to a plain address, but the
    original, as the mailbox received it, names our tagged envelope sender."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            value = inner.get("return-path") if isinstance(inner, email.message.Message) else None
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            headers = email.message_from_bytes(text if isinstance(text, bytes) else b"")
            value = headers.get("return-path")
        else:
            continue
        address = parseaddr(str(value or ""))[1]
        if address:
            return address
    return None


def unsubscribe_token(message: email.message.Message) -> str | None:
    """The signed token of List-Unsubscribe's mailto subject (`unsubscribe-TOKEN`), kept
    by "Re:", "Fwd:" and the like."""
    match = _SUBJECT_TOKEN.search(_decoded(message.get("subject", "")))
    return match.group(1) if match else None


def sender_addresses(message: email.message.Message, envelope_sender: str | None) -> list[str]:
    """Who sent an unsubscribe mail: the From addresses, then the envelope sender."""
    found = [address for _name, address in getaddresses([_decoded(value) for value in message.get_all("from", [])]) if "@" in address]
    if envelope_sender and "@" in envelope_sender and envelope_sender not in found:
        found.append(envelope_sender)
    return found


def _decoded(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError):  # an unknown charset or broken encoding
        return str(value)
