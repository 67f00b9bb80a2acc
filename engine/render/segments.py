"""SMS encoding and segment counting (3GPP TS 23.038 / 23.040), as carriers bill it.

A text made only of GSM 03.38 characters goes as GSM-7: 160 septets in one message, 153 per
part once concatenated (the user data header takes the rest). Characters of the extension
table (`€ [ ] { } \\ ^ ~ |` and form feed) are an escape plus a septet: 2 each. Any other
character switches the whole message to UCS-2: 70 UTF-16 code units in one message, 67 per
part; an emoji outside the Basic Multilingual Plane is a surrogate pair, 2 units.

Counts use ceil(length / per-part). A carrier never splits an escape pair or a surrogate
pair across parts, so in rare cases a real send takes one part more than counted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The default alphabet, in code order, without 0x1B (the escape to the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM7 = GSM7_BASIC | GSM7_EXTENSION
# The ASCII bytes of the basic table, and those of the extension table: an ASCII text is
# measured by deleting them with `bytes.translate` (one pass in C) instead of building a
# set of its characters. Most texts are ASCII; what is left decides as `measure_sms` does.
_ASCII_BASIC = bytes(code for code in range(128) if chr(code) in GSM7_BASIC)
_ASCII_EXTENSION = bytes(code for code in range(128) if chr(code) in GSM7_EXTENSION)

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SmsBody:
    """A rendered SMS: its text, how it will be encoded, and how many parts it costs.
    `units` is its length in septets (GSM-7) or UTF-16 code units (UCS-2)."""

    text: str
    encoding: Encoding
    segments: int
    units: int


def measure_sms(text: str) -> SmsBody:
    """The encoding and segment count of `text` (an empty text is still one message)."""
    if text.isascii():
        rest = text.encode("ascii").translate(None, _ASCII_BASIC)
        if not rest:
            return _body(text, "GSM-7", len(text), GSM7_SINGLE, GSM7_PART)
        if not rest.translate(None, _ASCII_EXTENSION):  # each extension character: 2 septets
            return _body(text, "GSM-7", len(text) + len(rest), GSM7_SINGLE, GSM7_PART)
        return _body(text, "UCS-2", len(text), UCS2_SINGLE, UCS2_PART)  # e.g. a tab or a `
    characters = set(text)
    if characters <= GSM7_BASIC:
        return _body(text, "GSM-7", len(text), GSM7_SINGLE, GSM7_PART)
    if characters <= _GSM7:
        septets = len(text) + sum(text.count(char) for char in characters & GSM7_EXTENSION)
        return _body(text, "GSM-7", septets, GSM7_SINGLE, GSM7_PART)
    # surrogatepass: a lone surrogate still counts as the one code unit it would be.
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return _body(text, "UCS-2", units, UCS2_SINGLE, UCS2_PART)


def _body(text: str, encoding: Encoding, units: int, single: int, part: int) -> SmsBody:
    segments = 1 if units <= single else -(-units // part)
    return SmsBody(text=text, encoding=encoding, segments=segments, units=units)
