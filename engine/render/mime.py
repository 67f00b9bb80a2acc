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
# Lines remembered per part: the template's own lines come first (from the first
# recipients), the ones each recipient makes unique then stop being added.
MEMO_LINES = 2048


def make_boundary() -> str:
    """A fresh multipart boundary (random, so a message never nests a twin)."""
    return "=_consentry_" + secrets.token_hex(12)


def encode_body(text: str, memo: dict[bytes, bytes] | None = None) -> tuple[bytes, bytes]:
    """`(content-transfer-encoding, encoded body ending in CRLF)` for a text part.

    `memo` (one per campaign part) remembers the quoted-printable of each line: a campaign's
    recipients share most lines of its parts (only those with a name or a link differ), and
    encoding was the largest cost of a render. Quoted-printable is line by line (soft breaks
    never cross a line end), so the lines encoded apart join into the same bytes.
    """
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
    if memo is None:
        # CRLF already in `data` makes b2a_qp use CRLF for its soft line breaks too.
        return QUOTED_PRINTABLE, binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    encoded = []
    for line in data.split(b"\r\n")[:-1]:  # `data` ends with CRLF: the last piece is empty
        known = memo.get(line)
        if known is None:
            known = binascii.b2a_qp(line + b"\r\n", quotetabs=False, istext=True, header=False)
            if len(memo) < MEMO_LINES:
                memo[line] = known
        encoded.append(known)
    return QUOTED_PRINTABLE, b"".join(encoded)
