"""VERP envelope senders: `bounces+<token>@domain`, one per delivery.

A bounce (RFC 3464 DSN) goes back to a message's envelope sender (MAIL FROM), and so do
many feedback-loop complaints. With the delivery's id signed into that address, the
listener (engine/inbound) knows which delivery a report is about without trusting anything
else in it: a report that does not carry a valid token records nothing.

    token = base32( version | varint tenant_id | varint delivery_id
                    | HMAC-SHA256(secret, DOMAIN | those bytes)[:8] ), lower-case, unpadded

Base32, not base64: some MTAs lower-case local parts, so the token must survive a case
change; its alphabet (a-z, 2-7) is safe in any local part. A real deployment's token is
about 21 characters, so `bounces+<token>@` stays far below the 64-character local-part
limit. 64 bits of MAC: a forger gets one guess per SMTP transaction, and the worst a
forged report can do is a block of one address that was sent to (docs/inbound-mail.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

# The same LEB128 ids as the unsubscribe tokens.
from engine.render.tokens import _put_varint, read_varints, signed_by_any

__all__ = ["ReturnPathClaims", "split_tagged", "tagged_address", "sign_return_path", "verify_return_path"]

VERSION = 1
_DOMAIN = b"consentry/return-path/v1\x00"
_MAC_BYTES = 8
_TOKEN = re.compile(r"[a-z2-7]{16,64}")


@dataclass(frozen=True, slots=True)
class ReturnPathClaims:
    tenant_id: int
    delivery_id: int


def sign_return_path(secret: bytes, tenant_id: int, delivery_id: int) -> str:
    """The token for one delivery's envelope sender."""
    if not secret:
        raise ValueError("the token secret is empty")
    payload = bytearray((VERSION,))
    _put_varint(payload, tenant_id)
    _put_varint(payload, delivery_id)
    payload += _mac(secret, payload)
    return b32_lower(bytes(payload))


_PAIRS = [a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"]


def b32_lower(data: bytes) -> str:
    """`base64.b32encode(data)` lower-cased, without its padding. Python 3.11's b32encode
    is a Python loop, and every bulk email's envelope sender needs one: ten bits at a time
    from one integer is a few times faster, and the same text."""
    chars = -(-len(data) * 8 // 5)
    odd = chars % 2
    # Zero bits fill the last character, as in base32's final quantum; one more character's
    # worth makes the count even, dropped below.
    n = int.from_bytes(data, "big") << (chars * 5 - len(data) * 8 + 5 * odd)
    pairs = (chars + odd) // 2
    text = "".join([_PAIRS[(n >> (10 * i)) & 1023] for i in range(pairs - 1, -1, -1)])
    return text[:-1] if odd else text


def verify_return_path(secret: bytes | Sequence[bytes], token: str) -> ReturnPathClaims | None:
    """The claims of a token signed with `secret` (or any of several), any letter case; None
    when it is malformed, tampered with or signed with another secret."""
    token = token.lower()
    if not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except binascii.Error:
        return None
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != token:
        return None  # one token, one spelling
    if len(raw) < 1 + 2 + _MAC_BYTES or raw[0] != VERSION:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not signed_by_any(secret, payload, mac, _mac):
        return None
    values = read_varints(payload, 1, 2)
    if values is None:
        return None
    return ReturnPathClaims(tenant_id=values[0], delivery_id=values[1])


def tagged_address(base: str, tag: str) -> str:
    """`bounces@d` + tag → `bounces+tag@d`."""
    local, _, domain = base.rpartition("@")
    return f"{local}+{tag}@{domain}"


def split_tagged(address: str) -> tuple[str, str | None]:
    """`Bounces+Tag@D` → (`bounces@d`, `tag`); an address without a tag → (it, None).
    Lower-cased: the base is looked up case-insensitively."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base, plus, tag = local.partition("+")
    return f"{base}@{domain}".lower(), (tag.lower() if plus and tag else None)


def _mac(secret: bytes, payload: bytes | bytearray) -> bytes:
    # hmac.digest: the one-shot C path, half the cost of hmac.new (once per message sent).
    return hmac.digest(secret, _DOMAIN + payload, "sha256")[:_MAC_BYTES]

