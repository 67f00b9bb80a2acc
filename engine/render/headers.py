"""Writing header values safely: addresses, display names, subjects, dates, message ids.

Two kinds of values reach a header:

- structured ones (addresses, message ids, URLs) must be exactly what they claim to be; a CR
  or LF in one is an attack (a new header, or a new recipient), so they are refused with
  `HeaderInjectionError`, never repaired;
- display text (names, subjects rendered from templates) is free text: line breaks and other
  control characters become spaces, and the result is written as an RFC 2047 encoded-word
  sequence when it is not plain ASCII.

Line lengths: RFC 5322 asks for lines of at most 78 characters; RFC 2047 section 2 limits an
encoded word to 75 characters and a line containing encoded words to 76. Folding only ever
inserts CRLF before existing whitespace (or between encoded words, whose separating
whitespace decoders drop), so unfolding gives back exactly the value.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from datetime import datetime
from email.utils import format_datetime

from engine.render.errors import HeaderInjectionError, InvalidHeaderError

MAX_LINE = 78
MAX_ENCODED_LINE = 76
MAX_ENCODED_WORD = 75
_WORD_OVERHEAD = len("=?utf-8?q?") + len("?=")

# RFC 2047 section 5 (3): the only characters an encoded word in a phrase (a display name)
# may carry unencoded. Used for subjects too: one rule, valid everywhere.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# RFC 5322 atext: a display name made only of these (and spaces) needs no quoting.
# RFC 2047 section 5 (1): in unstructured text (Subject) any printable ASCII but these.
_Q_SAFE_TEXT = frozenset(chr(code) for code in range(0x21, 0x7F)) - frozenset("=?_")
_ATEXT = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~ "
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_MESSAGE_ID = re.compile(r"<?([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)>?")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clean_display_text(text: str) -> str:
    """Free text made safe for a header: every run of line breaks or other control
    characters (CR, LF, NEL, U+2028...) becomes one space; the ends are stripped."""
    if not text.isprintable():
        text = _CONTROLS.sub(" ", text)
    return text.strip()


def check_address(field: str, address: str) -> str:
    """An addr-spec fit for a header, or `InvalidHeaderError` (`HeaderInjectionError` for
    CR/LF). An internationalised domain is written in its ASCII (IDNA) form; a non-ASCII
    local part would need SMTPUTF8 end to end and is refused."""
    if "\r" in address or "\n" in address:
        raise HeaderInjectionError(field, address)
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise InvalidHeaderError(field, address, "not an address of the form local@domain")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidHeaderError(field, address, "domain is not a valid IDNA name") from exc
    if not local.isascii():
        raise InvalidHeaderError(field, address, "a non-ASCII local part needs SMTPUTF8")
    if not _LOCAL_PART.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        raise InvalidHeaderError(field, address, "characters not allowed in an address")
    return f"{local}@{domain}"


def format_address(field: str, address: str, name: str | None = None) -> str:
    """The folded value of an address header (`To`, `From`) with an optional display name.

    The name is written bare when it is plain ASCII words, as a quoted string when it has
    specials (`,` `.` `"` `@`...), and as encoded words when it is not ASCII (or too long
    to quote on one line)."""
    spec = check_address(field, address)
    display = clean_display_text(name) if name else ""
    if not display:
        return spec
    prefix = len(field) + 2
    if display.isascii() and "=?" not in display:
        tokens: list[str] | None
        if _ATEXT.issuperset(display):
            tokens = display.split()
            if prefix + len(tokens[0]) > MAX_LINE or max(map(len, tokens)) >= MAX_LINE:
                tokens = None  # a word too long to fold: encoded words can be split
        else:
            quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
            tokens = [quoted] if prefix + len(quoted) <= MAX_LINE else None
        if tokens is not None:
            return _fold([*tokens, f"<{spec}>"], prefix, MAX_LINE)
    words = encode_words(display, MAX_ENCODED_LINE - prefix, phrase=True)
    return _fold([*words, f"<{spec}>"], prefix, MAX_ENCODED_LINE)


def format_unstructured(field: str, text: str) -> str:
    """The folded value of a free-text header such as `Subject`."""
    text = clean_display_text(text)
    prefix = len(field) + 2
    if text.isascii() and "=?" not in text:
        words = text.split(" ")
        if prefix + len(words[0]) <= MAX_LINE and max(map(len, words)) < MAX_LINE:
            return _fold_ascii(words, prefix)
    # Non-ASCII, or something a decoder would take for an encoded word, or a run of
    # characters too long to fold: encoded words (which fold anywhere).
    return "\r\n ".join(encode_words(text, MAX_ENCODED_LINE - prefix, phrase=False))


def format_message_id(value: str) -> str:
    """`<left@right>` from `left@right` or `<left@right>`."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError("Message-ID", value)
    match = _MESSAGE_ID.fullmatch(value.strip())
    if match is None:
        raise InvalidHeaderError("Message-ID", value, "not of the form <left@right>")
    return f"<{match.group(1)}>"


def format_date(value: datetime | int) -> str:
    """An RFC 5322 date from an aware datetime (kept in its offset) or from microseconds
    since the epoch (written in UTC, `+0000`)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("the Date header needs an aware datetime")
        return format_datetime(value)
    return _utc_date(value // 1_000_000)


@functools.lru_cache(maxsize=8)
def _utc_date(seconds: int) -> str:
    # A campaign stamps thousands of messages within the same second: format each second once.
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def encode_words(text: str, first_room: int = MAX_ENCODED_WORD, *, phrase: bool) -> list[str]:
    """`text` as RFC 2047 UTF-8 encoded words, each at most 75 characters (the first at
    most `first_room`), split only between characters. Q encoding when it is shorter
    (mostly-ASCII text stays readable), B otherwise. `phrase`: the words go in a display
    name, where Q may leave fewer characters unencoded."""
    table = _Q_PHRASE_TABLE if phrase else _Q_TEXT_TABLE
    data = text.encode("utf-8", "replace")
    # Q spends 3 characters on each byte it may not keep (a space becomes "_": 1).
    unsafe = len(data.translate(None, _Q_PHRASE_BYTES if phrase else _Q_TEXT_BYTES))
    q_length = len(data) + 2 * (unsafe - data.count(b" "))
    b_length = -(-len(data) // 3) * 4
    room = min(first_room, MAX_ENCODED_WORD) - _WORD_OVERHEAD
    use_b = b_length < q_length
    # The usual case, one word: no need to look at character boundaries.
    if use_b and b_length <= room:
        return [_b_word(data)]
    if not use_b and q_length <= room:
        return ["=?utf-8?q?" + "".join([table[byte] for byte in data]) + "?="]

    words: list[str] = []
    chunk = bytearray()
    size = 0
    for char in text:
        encoded = char.encode("utf-8", "replace")
        cost = len(encoded) if use_b else sum(len(table[byte]) for byte in encoded)
        limit = room // 4 * 3 if use_b else room
        if chunk and (len(chunk) + cost if use_b else size + cost) > limit:
            words.append(_b_word(chunk) if use_b else _q_word(chunk, table))
            chunk = bytearray()
            size = 0
            room = MAX_ENCODED_WORD - _WORD_OVERHEAD
        chunk += encoded
        size += cost
    words.append(_b_word(chunk) if use_b else _q_word(chunk, table))
    return words


def _q_table(safe: frozenset[str]) -> tuple[str, ...]:
    return tuple(
        chr(byte) if chr(byte) in safe else "_" if byte == 0x20 else f"={byte:02X}"
        for byte in range(256)
    )


_Q_PHRASE_TABLE = _q_table(_Q_SAFE)
_Q_TEXT_TABLE = _q_table(_Q_SAFE_TEXT)
_Q_PHRASE_BYTES = "".join(sorted(_Q_SAFE)).encode("ascii")
_Q_TEXT_BYTES = "".join(sorted(_Q_SAFE_TEXT)).encode("ascii")


def _q_word(data: bytes | bytearray, table: tuple[str, ...]) -> str:
    return "=?utf-8?q?" + "".join([table[byte] for byte in data]) + "?="


def _b_word(data: bytes | bytearray) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _fold(tokens: list[str], prefix: int, limit: int) -> str:
    """Tokens joined by single spaces, breaking lines before a token that would pass
    `limit` (a token longer than a line gets a line of its own)."""
    out = [tokens[0]]
    column = prefix + len(tokens[0])
    for token in tokens[1:]:
        if column + 1 + len(token) > limit:
            out.append("\r\n " + token)
            column = 1 + len(token)
        else:
            out.append(" " + token)
            column += 1 + len(token)
    return "".join(out)


def _fold_ascii(words: list[str], prefix: int) -> str:
    """Folds text at its own spaces; runs of spaces are kept (an empty word is one space)."""
    out = [words[0]]
    column = prefix + len(words[0])
    for word in words[1:]:
        if word and column + 1 + len(word) > MAX_LINE and column > 1:
            out.append("\r\n " + word)
            column = 1 + len(word)
        else:
            out.append(" " + word)
            column += 1 + len(word)
    return "".join(out)
