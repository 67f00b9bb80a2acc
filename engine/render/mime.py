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
from collections.abc import Sequence
from dataclasses import dataclass

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
    data = _wire_data(text)
    high = _high_bytes(data)
    if _prefers_base64(high, len(data)):
        return BASE64, base64.encodebytes(data).replace(b"\n", b"\r\n")
    if memo is None:
        # CRLF already in `data` makes b2a_qp use CRLF for its soft line breaks too.
        return QUOTED_PRINTABLE, _qp(data)
    return QUOTED_PRINTABLE, _qp_lines(data, memo)


@dataclass(frozen=True, slots=True)
class QpPiece:
    """Whole lines of a part, quoted-printable, with what the choice of encoding needs."""

    qp: bytes
    high: int  # bytes >= 0x80
    size: int  # bytes before encoding


def qp_piece(text: str, memo: dict[bytes, bytes] | None = None) -> QpPiece:
    """Lines of a part (`text` ends with a newline) encoded on their own: pieces that each
    end at a line end join into the part's encoding (`join_pieces`), so the pieces every
    recipient shares are encoded once (engine/render/skeleton.py)."""
    data = _wire_data(text)
    high = _high_bytes(data)
    return QpPiece(_qp(data) if memo is None else _qp_lines(data, memo), high, len(data))


def join_pieces(pieces: Sequence[QpPiece]) -> bytes | None:
    """The part made of `pieces`, quoted-printable; None when `encode_body` would choose
    base64 for the part as a whole (the caller then encodes the whole part)."""
    high = size = 0
    for piece in pieces:
        high += piece.high
        size += piece.size
    if _prefers_base64(high, size):
        return None
    return b"".join([piece.qp for piece in pieces])


def _high_bytes(data: bytes) -> int:
    return 0 if data.isascii() else len(data) - len(data.translate(None, _HIGH_BYTES))


def _prefers_base64(high: int, size: int) -> bool:
    # Quoted-printable spends 3 bytes per high byte, base64 4 per 3 of any byte.
    return 2 * high > size // 3


def _wire_data(text: str) -> bytes:
    """CRLF line endings, a final one, UTF-8."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    # Lone surrogates (from a badly decoded contact field) become "?" rather than an error.
    return text.replace("\n", "\r\n").encode("utf-8", "replace")


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _qp_lines(data: bytes, memo: dict[bytes, bytes]) -> bytes:
    encoded = []
    for line in data.split(b"\r\n")[:-1]:  # `data` ends with CRLF: the last piece is empty
        known = memo.get(line)
        if known is None:
            known = _qp(line + b"\r\n")
            if len(memo) < MEMO_LINES:
                memo[line] = known
        encoded.append(known)
    return b"".join(encoded)
