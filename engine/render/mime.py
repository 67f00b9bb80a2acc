"""MIME body encoding for the email skeleton: bytes in, wire bytes out, no Message objects.

Bodies are UTF-8 with CRLF line endings, encoded so that every line is at most 76
characters (RFC 2045): quoted-printable for mostly-ASCII text (readable, and small), base64
when so much of it is non-ASCII that quoted-printable would be larger.

The multipart boundary starts with `=_`. Neither encoding can ever produce that pair (in
quoted-printable `=` is always followed by two hex digits or a line break; base64 only uses
`=` as trailing padding), so the boundary cannot occur inside a part, whatever a template
renders: no need to scan bodies for it per recipient.
"""

from __future__ import annotations

import base64
import binascii
import secrets

QUOTED_PRINTABLE = b"quoted-printable"
BASE64 = b"base64"
_HIGH_BYTES = bytes(range(0x80, 0x100))


def make_boundary() -> str:
    """A fresh multipart boundary (random, so a message never nests a twin)."""
    return "=_consentry_" + secrets.token_hex(12)


def encode_body(text: str) -> tuple[bytes, bytes]:
    """`(content-transfer-encoding, encoded body ending in CRLF)` for a text part."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    # Lone surrogates (from a badly decoded contact field) become "?" rather than an error.
    data = text.replace("\n", "\r\n").encode("utf-8", "replace")
    if not data.isascii():
        high = len(data) - len(data.translate(None, _HIGH_BYTES))
        # Quoted-printable spends 3 bytes per high byte, base64 4 per 3 of any byte.
        if 2 * high > len(data) // 3:
            return BASE64, base64.encodebytes(data).replace(b"\n", b"\r\n")
    # CRLF already in `data` makes b2a_qp use CRLF for its soft line breaks too.
    return QUOTED_PRINTABLE, binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
