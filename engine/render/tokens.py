"""Signed unsubscribe / preference-centre tokens.

A token names who clicked (tenant, campaign, contact, channel) without a database lookup
and without anything a recipient could change to unsubscribe someone else:

    base64url( version | channel | varint tenant_id | varint campaign_id+1 | varint contact_id
               | HMAC-SHA256(secret, DOMAIN | those bytes)[:16] )

`campaign_id` 0 on the wire means none (an individual message). Ids are LEB128 varints, so
a token of a real deployment is 30-36 characters: short enough for an SMS or a mailto
subject. The MAC
is truncated to 128 bits, far beyond what online guessing can reach. Tokens do not expire:
CAN-SPAM wants an unsubscribe link to keep working for at least 30 days after the send,
and a working old link harms no one. Rotating the secret: verify with (new, old) until the
old links no longer matter.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

VERSION = 1
# Keeps these MACs apart from any other use of the same secret.
_DOMAIN = b"consentry/unsubscribe-token/v1\x00"
_MAC_BYTES = 16
_CHANNEL_CODES = {"*": 0, "email": 1, "sms": 2, "voice": 3, "letter": 4, "social": 5}
_CHANNELS = {code: channel for channel, code in _CHANNEL_CODES.items()}
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token says: who to unsubscribe, from what."""

    tenant_id: int
    campaign_id: int | None
    contact_id: int
    channel: str


def sign_token(
    secret: bytes, tenant_id: int, campaign_id: int | None, contact_id: int, channel: str
) -> str:
    """A URL-safe token for these claims (no padding, alphabet `A-Z a-z 0-9 - _`)."""
    if not secret:
        raise ValueError("the token secret is empty")
    if channel not in _CHANNEL_CODES:
        raise ValueError(f"unknown channel {channel!r}")
    payload = bytearray((VERSION, _CHANNEL_CODES[channel]))
    _put_varint(payload, tenant_id)
    _put_varint(payload, 0 if campaign_id is None else campaign_id + 1)
    _put_varint(payload, contact_id)
    payload += _mac(secret, payload)
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def verify_token(secret: bytes | Sequence[bytes], token: str) -> TokenClaims | None:
    """The claims of a token signed with `secret` (or any of several, newest first), or
    None when it is malformed, tampered with or signed with another secret."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except binascii.Error:  # a length no encoding produces
        return None
    # One token, one spelling: refuse encodings whose unused trailing bits were changed.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    if len(raw) < 2 + 3 + _MAC_BYTES or raw[0] != VERSION or raw[1] not in _CHANNELS:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not signed_by_any(secret, payload, mac, _mac):
        return None
    values = read_varints(payload, 2, 3)
    if values is None:
        return None
    tenant_id, campaign_plus_one, contact_id = values
    return TokenClaims(
        tenant_id=tenant_id,
        campaign_id=campaign_plus_one - 1 if campaign_plus_one else None,
        contact_id=contact_id,
        channel=_CHANNELS[raw[1]],
    )


def unsubscribe_url(public_url: str, token: str) -> str:
    """The one-click unsubscribe link: `{public_url}/u/{token}`."""
    return f"{public_url.rstrip('/')}/u/{token}"


def preferences_url(public_url: str, token: str) -> str:
    """The preference-centre link: `{public_url}/p/{token}`."""
    return f"{public_url.rstrip('/')}/p/{token}"


def read_varints(payload: bytes, start: int, count: int) -> list[int] | None:
    """Exactly `count` varints from `start` to the end of `payload`, or None if it holds
    fewer, more, or a malformed one (a signed token's fields)."""
    values: list[int] = []
    position = start
    for _ in range(count):
        value, position = _get_varint(payload, position)
        if value is None:
            return None
        values.append(value)
    return values if position == len(payload) else None


def signed_by_any(
    secret: bytes | Sequence[bytes], payload: bytes | bytearray, mac: bytes,
    mac_of: Callable[[bytes, bytes | bytearray], bytes],
) -> bool:
    """Does `mac` sign `payload` under `secret`, or under any of several (current first, then
    retired ones)? Every secret is tried, so the time taken does not say which one matched."""
    secrets = (secret,) if isinstance(secret, bytes | bytearray) else tuple(secret)
    matched = False
    for candidate in secrets:
        matched |= hmac.compare_digest(mac_of(candidate, payload), mac)
    return matched


def _mac(secret: bytes, payload: bytes | bytearray) -> bytes:
    # hmac.digest: the one-shot C path, half the cost of hmac.new (once per message sent).
    return hmac.digest(secret, _DOMAIN + payload, "sha256")[:_MAC_BYTES]


def _put_varint(buffer: bytearray, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"token ids are non-negative integers, not {value!r}")
    while value >= 0x80:
        buffer.append((value & 0x7F) | 0x80)
        value >>= 7
    buffer.append(value)


def _get_varint(data: bytes, position: int) -> tuple[int | None, int]:
    value = shift = 0
    while position < len(data) and shift <= 63:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position
