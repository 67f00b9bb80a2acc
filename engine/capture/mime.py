"""What the SMTP capture server records of a message: headers, subject and text part.

A lean reader, not a MIME library: it unfolds the header block, decodes RFC 2047 words
where there are any, and walks multipart bodies only as far as the first `text/plain`
part, decoding quoted-printable or base64 and the part's charset. (The HTML part is left
in the raw bytes: decoding and storing it would cost the server a third more per message.) The
standard `email` parser builds a full object tree and costs several times more CPU per
message, which the capture server (meant to keep up with a bulk sender on one core) cannot
spend. Anything it cannot make sense of is kept as-is rather than rejected: a capture
server records what it was sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n[ \t]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')
# Nested multiparts deeper than this are not looked into (a hostile message could nest
# thousands); no real campaign email nests more than three.
_MAX_DEPTH = 8


@dataclass(slots=True)
class MessageSummary:
    headers: list[list[str]]
    subject: str
    message_id: str | None
    text: str


def summarize(raw: bytes) -> MessageSummary:
    """Headers, decoded subject, Message-ID and decoded text part of a raw message."""
    headers, body = _split(raw)
    decoded = [[name, decode_words(value)] for name, value in headers]
    subject = message_id = None
    for name, value in decoded:
        lower = name.lower()
        if lower == "subject" and subject is None:
            subject = value
        elif lower == "message-id" and message_id is None:
            message_id = value.strip() or None
    return MessageSummary(
        headers=decoded,
        subject=subject or "",
        message_id=message_id,
        text=_find_text(headers, body, 0) or "",
    )


def decode_words(value: str) -> str:
    """A header value with its RFC 2047 encoded words (`=?utf-8?q?...?=`) decoded."""
    if "=?" not in value:
        return value
    pieces: list[str] = []
    run: list[bytes] = []  # adjacent words of one charset decode together (split characters)
    run_charset = ""
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[position:match.start()]
        # RFC 2047 6.2: white space between two encoded words is not displayed.
        joins = bool(run) and not gap.strip()
        charset = match.group(1).partition("*")[0].lower()  # RFC 2231 may add *language
        if run and not (joins and charset == run_charset):
            pieces.append(_decode_run(run, run_charset))
            run = []
        if not joins:
            pieces.append(gap)
        run_charset = charset
        text = match.group(3)
        try:
            if match.group(2) in "bB":
                run.append(base64.b64decode(text + "=" * (-len(text) % 4)))
            else:
                run.append(binascii.a2b_qp(text.encode("ascii", "replace"), header=True))
        except (binascii.Error, ValueError):
            run.append(match.group(0).encode("utf-8"))
        position = match.end()
    if run:
        pieces.append(_decode_run(run, run_charset))
    pieces.append(value[position:])
    return "".join(pieces)


def _decode_run(run: list[bytes], charset: str) -> str:
    try:
        return b"".join(run).decode(charset, "replace")
    except LookupError:
        return b"".join(run).decode("utf-8", "replace")


def _split(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    end = raw.find(b"\r\n\r\n")  # a plain find is several times faster than a regex here
    if end >= 0:
        block, body = raw[:end], raw[end + 4:]
    else:
        match = _HEADER_END.search(raw)  # bare LF line ends, from a lax client
        block, body = (raw, b"") if match is None else (raw[:match.start()], raw[match.end():])
    text = block.decode("utf-8", "surrogateescape")
    if "\n " in text or "\n\t" in text:
        text = _FOLD.sub(" ", text)
    headers = []
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name and " " not in name:
            headers.append((name, value.strip()))
    return headers, body


def _content_type(headers: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    for name, value in headers:
        if name.lower() == "content-type":
            kind, _, rest = value.partition(";")
            # findall gives "" for the alternative that did not match.
            params = {key.lower(): bare or quoted for key, quoted, bare in _PARAM.findall(";" + rest)}
            return kind.strip().lower(), params
    return "text/plain", {}


def _header(headers: list[tuple[str, str]], wanted: str) -> str:
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return ""


def _find_text(headers: list[tuple[str, str]], body: bytes, depth: int) -> str | None:
    """The decoded first text/plain part that is not an attachment, or None."""
    kind, params = _content_type(headers)
    if kind.startswith("multipart/"):
        boundary = params.get("boundary")
        if not boundary or depth >= _MAX_DEPTH:
            return None
        for part in _parts(body, boundary.encode("utf-8", "surrogateescape")):
            text = _find_text(*_split(part), depth + 1)
            if text is not None:
                return text
        return None
    if kind != "text/plain" or "attachment" in _header(headers, "content-disposition").lower():
        return None
    return _decode_body(body, _header(headers, "content-transfer-encoding"), params.get("charset", "utf-8"))


def _parts(body: bytes, boundary: bytes) -> Iterator[bytes]:
    chunks = body.split(b"--" + boundary)
    for chunk in chunks[1:]:  # before the first delimiter is the preamble
        if chunk.startswith(b"--"):
            return  # the close delimiter
        # A part runs from after the delimiter line to the CRLF before the next one.
        _, _, content = chunk.partition(b"\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        yield content


def _decode_body(body: bytes, encoding: str, charset: str) -> str:
    encoding = encoding.strip().lower()
    try:
        if encoding == "quoted-printable":
            body = binascii.a2b_qp(body)
        elif encoding == "base64":
            body = base64.b64decode(b"".join(body.split()), validate=False)
    except (binascii.Error, ValueError):
        pass
    try:
        text = body.decode(charset or "utf-8", "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")
