"""The shapes of Twilio's Messages API that the SMS capture server reproduces.

Pure functions: JSON for a Message resource, a list page, an error; Twilio's segment count;
the date formats. The official twilio client parses these, so they follow what
api.twilio.com returns (2010-04-01 API): string-valued `num_segments`, RFC 2822 dates,
`next_page_uri` relative to the API host, and errors as `{code, message, more_info,
status}` (the legacy shape, which the client turns into `TwilioRestException`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

API_VERSION = "2010-04-01"

# Error codes (https://www.twilio.com/docs/errors/<code>).
MISSING_BODY = 21602
MISSING_FROM = 21603
MISSING_TO = 21604
INVALID_TO = 21211
UNSUBSCRIBED = 21610
NOT_MOBILE = 21614
BODY_TOO_LONG = 21617
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
SERVICE_UNAVAILABLE = 20503
INTERNAL_ERROR = 20500

MAX_BODY = 1600  # characters, Twilio's limit for one Message
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

# GSM 03.38: the basic set costs one septet, the extension table two (escape + char).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def count_segments(body: str) -> int:
    """How many SMS segments Twilio bills `body` as.

    GSM-7 when every character is in the GSM 03.38 tables (160 septets, or 153 per part of a
    concatenated message), UCS-2 otherwise (70 UTF-16 units, or 67 per part). Computed here,
    not borrowed from the renderer, because the capture server stands for the provider: a
    disagreement between the two is a finding, not something to hide.
    """
    septets = 0
    for character in body:
        if character in _GSM_BASIC:
            septets += 1
        elif character in _GSM_EXTENDED:
            septets += 2
        else:
            units = len(body.encode("utf-16-le")) // 2
            return 1 if units <= 70 else -(-units // 67)
    return 1 if septets <= 160 else -(-septets // 153)


def rfc2822(moment: datetime | None) -> str | None:
    """`Tue, 24 Nov 2026 18:00:00 +0000`, as Twilio writes dates."""
    if moment is None:
        return None
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


@dataclass(slots=True)
class Message:
    """A message as the capture server keeps it."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    num_segments: int
    direction: str
    date_created: datetime
    status: str = "queued"
    date_sent: datetime | None = None
    date_updated: datetime | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    error_code: str | None = None  # set when the message ends undelivered
    extra: dict[str, Any] = field(default_factory=dict)

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """The Message resource as api.twilio.com returns it."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created),
            "direction": self.direction,
            "error_code": int(self.error_code) if self.error_code else None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}/Media.json",
            },
            "to": self.to,
            "uri": self.uri(),
        }


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def parse_date_filter(value: str, *, end_of_day: bool) -> datetime | None:
    """A `DateSent` filter value: `YYYY-MM-DD` (a whole day) or an ISO 8601 instant."""
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The filters and paging of `GET .../Messages.json`."""

    to: str | None = None
    from_: str | None = None
    sent_on: str | None = None  # DateSent=YYYY-MM-DD
    sent_after: datetime | None = None  # DateSent>=
    sent_before: datetime | None = None  # DateSent<=
    page: int = 0
    page_size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def from_params(cls, params: Any) -> ListQuery:
        def number(name: str, default: int) -> int:
            try:
                return max(0, int(params.get(name, default)))
            except ValueError:
                return default

        sent_on = params.get("DateSent") or None
        return cls(
            to=params.get("To") or None,
            from_=params.get("From") or None,
            sent_on=sent_on[:10] if sent_on else None,
            sent_after=parse_date_filter(params.get("DateSent>", ""), end_of_day=False),
            sent_before=parse_date_filter(params.get("DateSent<", ""), end_of_day=True),
            page=number("Page", 0),
            page_size=min(MAX_PAGE_SIZE, number("PageSize", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE),
        )

    def matches(self, message: Message) -> bool:
        if self.to is not None and message.to != self.to:
            return False
        if self.from_ is not None and message.from_ != self.from_:
            return False
        if self.sent_on or self.sent_after or self.sent_before:
            sent = message.date_sent
            if sent is None:
                return False
            if self.sent_on and sent.date().isoformat() != self.sent_on:
                return False
            if self.sent_after and sent < self.sent_after.replace(microsecond=0):
                return False
            if self.sent_before and sent > self.sent_before:
                return False
        return True

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.to:
            params["To"] = self.to
        if self.from_:
            params["From"] = self.from_
        if self.sent_on:
            params["DateSent"] = self.sent_on
        if self.sent_after:
            params["DateSent>"] = self.sent_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.sent_before:
            params["DateSent<"] = self.sent_before.strftime("%Y-%m-%dT%H:%M:%SZ")
        return params


def list_page(account_sid: str, query: ListQuery, matching: list[Message]) -> dict[str, Any]:
    """One page of a list, newest first, with the paging URIs the client follows."""
    base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
    start = query.page * query.page_size
    records = matching[start:start + query.page_size]

    def page_uri(page: int, token: str | None = None) -> str:
        params = {**query.params(), "PageSize": str(query.page_size), "Page": str(page)}
        if token:
            params["PageToken"] = token
        return base + "?" + urlencode(params)

    has_next = start + query.page_size < len(matching)
    return {
        "messages": [message.to_json() for message in records],
        "end": start + max(0, len(records) - 1),
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(query.page + 1, "PA" + records[-1].sid) if has_next and records else None,
        "previous_page_uri": page_uri(query.page - 1) if query.page > 0 else None,
        "page": query.page,
        "page_size": query.page_size,
        "start": start,
        "uri": page_uri(query.page),
    }
