"""The precompiled MIME skeleton: one per campaign, bytes per recipient.

Building an `email.message.EmailMessage` per recipient and serialising it runs the whole
header registry, policy and generator machinery every time: a few hundred messages per
second per core. Almost all of a campaign's message is the same for every recipient, so
the skeleton writes that part once, as bytes (From, the MIME structure, part headers,
List-Unsubscribe-Post, the footer's postal address), and per recipient only renders the
templates, encodes the two bodies (C speed: `binascii`) and fills in To, Subject, Date,
Message-ID and the unsubscribe links.

Bulk messages get what the law and the big mailbox providers require:
- `List-Unsubscribe: <mailto:...?subject=unsubscribe-TOKEN>, <https://.../u/TOKEN>` (RFC
  2369) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058: one-click
  unsubscribe by POST, required by Gmail and Yahoo for bulk senders since 2024);
- a footer on both parts with the sender's postal address (CAN-SPAM) and the unsubscribe
  and preference links, unless the template already shows both the link and the address.
Individual (1:1) messages get neither.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engine.render.errors import ComplianceError, HeaderInjectionError, InvalidHeaderError
from engine.render.headers import (
    check_address,
    clean_display_text,
    format_address,
    format_date,
    format_message_id,
    format_unstructured,
)
from engine.render.mime import (
    QUOTED_PRINTABLE,
    QpPiece,
    encode_body,
    join_pieces,
    make_boundary,
    qp_piece,
)
from engine.render.sandbox import CompiledTemplate

if TYPE_CHECKING:
    from engine.render.campaign import CampaignTemplates
    from engine.render.signing import DkimSigner

# An unsubscribe link as it may appear inside <...> in List-Unsubscribe: no spaces, no
# commas (RFC 2369 separates URIs with them), no angle brackets.
_HEADER_URL = re.compile(r"https?://[!-+\--;=?-~]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
# Context names whose value is different for every recipient: a template reading one makes
# every render unique, and nothing is remembered (EmailSkeleton._made).
PER_RECIPIENT_VARIABLES = frozenset(
    {"unsubscribe_token", "unsubscribe_url", "preferences_url", "email", "phone", "external_id"})
# How much of a campaign's renders is remembered, counted in encoded bytes: about 2,000
# recipients' worth of a 5 kB message, whatever the audience's size.
MEMO_BYTES = 8 * 1024 * 1024
MEMO_ENTRIES = 16_384


_MISSING = object()
# (text encoding, text body, (HTML encoding, HTML body) or None), as the message carries them.
_Bodies = tuple[bytes, bytes, "tuple[bytes, bytes] | None"]


@dataclass(frozen=True, slots=True)
class _Made:
    """What the templates made for one set of variable values, footers' fixed lines
    included, encoded: every recipient with those values shares it (EmailSkeleton._made)."""

    subject_line: bytes
    text: QpPiece  # the text part up to the footer's links
    page_head: QpPiece | None  # the HTML part up to the footer's links
    page_tail: QpPiece | None  # and after them


@dataclass(frozen=True, slots=True)
class EmailContent:
    """What one recipient reads: the subject and the parts, footer included."""

    subject: str
    text: str
    html: str | None


class EmailSkeleton:
    """A campaign's email, precompiled; `render` gives one recipient's message as bytes."""

    def __init__(
        self,
        *,
        sender_email: str,
        sender_name: str | None,
        subject: CompiledTemplate,
        text: CompiledTemplate,
        html: CompiledTemplate | None = None,
        bulk: bool,
        postal_address: str | None = None,
        unsubscribe_mailto: str | None = None,
        dkim: DkimSigner | None = None,
        reply_to: str | None = None,
        reply_to_name: str | None = None,
        remember: bool = True,
    ) -> None:
        self.sender_email = check_address("From", sender_email)
        self.bulk = bulk
        self._subject = subject
        self._text = text
        self._html = html
        self._dkim = dkim
        self._from_line = _line("From", format_address("From", sender_email, sender_name))
        if reply_to is not None:
            # Replies reach a person (or a monitored mailbox), whatever the From says.
            self._from_line += _line("Reply-To", format_address("Reply-To", reply_to, reply_to_name))
        self._static_subject = None
        if subject.is_static:
            self._static_subject = clean_display_text(subject.render({}))
            self._subject_line = _line("Subject", format_unstructured("Subject",
                                                                      self._static_subject))

        self._postal_address = ""
        self._unsubscribe_prefix = b""
        self._has_mailto = unsubscribe_mailto is not None
        if bulk:
            postal = clean_display_text(postal_address or "")
            if not postal:
                raise ComplianceError(
                    "a bulk email needs the sender's postal address (tenant postal_address)"
                )
            self._postal_address = postal
            self._postal_html = html_escape(postal)
            if unsubscribe_mailto is not None:
                mailto = check_address("List-Unsubscribe", unsubscribe_mailto)
                self._unsubscribe_prefix = (
                    f"List-Unsubscribe: <mailto:{mailto}?subject=unsubscribe-".encode("ascii")
                )
            else:
                self._unsubscribe_prefix = b"List-Unsubscribe: <"

        # A bulk message is the templates' output, the footer's fixed lines and two lines of
        # links. When the templates read nothing unique to a recipient, their output is a
        # function of the few values they read (a first name, the tenant's name): it is
        # rendered and encoded once per set of values (`_made`), and each recipient adds only
        # the links. `remember=False` turns that off (tests compare both ways).
        templates = [part for part in (subject, text, html) if part is not None]
        read = frozenset().union(*(part.variables for part in templates))
        self._memo_names: tuple[str, ...] | None = None
        if remember and bulk and not read & PER_RECIPIENT_VARIABLES and all(part.is_deterministic for part in templates):
            # The footer shows the tenant's name: part of what is shared, so part of the key.
            self._memo_names = tuple(sorted(read | {"tenant_name"}))
        self._memo: dict[tuple[object, ...], _Made | None] = {}
        self._memo_bytes = 0
        self._stand_in = "https://links.invalid/" + secrets.token_hex(12)
        # Quoted-printable per line, remembered (engine/render/mime.py encode_body).
        self._text_lines: dict[bytes, bytes] = {}
        self._html_lines: dict[bytes, bytes] = {}
        boundary = make_boundary()
        self._boundary = boundary
        if html is None:
            self._mime_head = b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            self._part_break = b""
            self._end = b""
        else:
            self._mime_head = (
                b"MIME-Version: 1.0\r\n"
                b'Content-Type: multipart/alternative;\r\n boundary="'
                + boundary.encode("ascii")
                + b'"\r\n\r\n--'
                + boundary.encode("ascii")
                + b'\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            )
            self._part_break = (
                b"\r\n--"
                + boundary.encode("ascii")
                + b'\r\nContent-Type: text/html; charset="utf-8"\r\n'
            )
            self._end = b"\r\n--" + boundary.encode("ascii") + b"--\r\n"

    @classmethod
    def from_templates(
        cls,
        templates: CampaignTemplates,
        *,
        sender_email: str,
        sender_name: str | None,
        bulk: bool,
        postal_address: str | None = None,
        unsubscribe_mailto: str | None = None,
        dkim: DkimSigner | None = None,
        reply_to: str | None = None,
        remember: bool = True,
    ) -> EmailSkeleton:
        """The skeleton of an email campaign compiled by `compile_campaign_templates`."""
        if templates.subject is None:
            raise ValueError("not an email campaign's templates (no subject)")
        return cls(
            sender_email=sender_email,
            sender_name=sender_name,
            subject=templates.subject,
            text=templates.text,
            html=templates.html,
            bulk=bulk,
            postal_address=postal_address,
            unsubscribe_mailto=unsubscribe_mailto,
            dkim=dkim,
            reply_to=reply_to,
            remember=remember,
        )

    def render_content(self, context: Mapping[str, object]) -> EmailContent:
        """Subject and parts for one recipient (a preview; `render` uses the same)."""
        url = self._unsubscribe(context)[0] if self.bulk else ""
        return self._content(context, url)

    def _content(self, context: Mapping[str, object], url: str, preferences: str | None = None) -> EmailContent:
        subject = self._static_subject
        if subject is None:
            subject = clean_display_text(self._subject.render(context))
        text = _normalise_lines(self._text.render(context))
        page = None
        if self._html is not None:
            page = _normalise_lines(self._html.render(context))
        if self.bulk:
            if preferences is None:
                preferences = str(context.get("preferences_url") or "")
            tenant_name = clean_display_text(str(context.get("tenant_name") or ""))
            text = self._text_footer(text, url, preferences, tenant_name)
            if page is not None:
                page = self._html_footer(page, url, preferences, tenant_name)
        return EmailContent(subject=subject, text=text, html=page)

    def render(
        self,
        to_addr: str,
        to_name: str | None,
        context: Mapping[str, object],
        message_id: str,
        date: datetime | int,
    ) -> bytes:
        """One recipient's complete RFC 5322 message, CRLF line endings.

        `date` is an aware datetime or microseconds since the epoch (UTC). Raises
        `InvalidHeaderError` / `HeaderInjectionError` for a bad address or message id and
        the template errors of `CompiledTemplate.render`; all concern this recipient only.
        """
        to_value = format_address("To", to_addr, to_name)
        url = token = ""
        if self.bulk:
            url, token = self._unsubscribe(context)
        made = self._made(context) if self._memo_names is not None else None
        bodies = None if made is None else self._bodies(made, context, url)
        parts = [self._from_line, b"To: ", to_value.encode("ascii"), b"\r\n"]
        if bodies is not None:
            assert made is not None
            parts.append(made.subject_line)
        else:
            content = self._content(context, url)
            if self._static_subject is not None:
                parts.append(self._subject_line)
            else:
                parts += [b"Subject: ", format_unstructured("Subject", content.subject)
                          .encode("ascii"), b"\r\n"]
            bodies = self._encode(content)
        parts += [
            b"Date: ", format_date(date).encode("ascii"),
            b"\r\nMessage-ID: ", format_message_id(message_id).encode("ascii"), b"\r\n",
        ]
        if self.bulk:
            if self._has_mailto:
                parts += [self._unsubscribe_prefix, token.encode("ascii"), b">,\r\n <"]
            else:
                parts.append(self._unsubscribe_prefix)
            parts += [url.encode("ascii"),
                      b">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"]
        text_encoding, text_body, page = bodies
        parts += [self._mime_head, b"Content-Transfer-Encoding: ", text_encoding,
                  b"\r\n\r\n", text_body]
        if page is not None:
            html_encoding, html_body = page
            parts += [self._part_break, b"Content-Transfer-Encoding: ", html_encoding,
                      b"\r\n\r\n", html_body, self._end]
        message = b"".join(parts)
        if self._dkim is not None:
            message = self._dkim.sign(message) + message
        return message

    def _encode(self, content: EmailContent) -> _Bodies:
        text_encoding, text_body = encode_body(content.text, self._text_lines)
        page = None if content.html is None else encode_body(content.html, self._html_lines)
        return text_encoding, text_body, page

    def _made(self, context: Mapping[str, object]) -> _Made | None:
        """The shared part of the message for the values this recipient's templates read,
        made on first sight; None when it cannot be shared (a value not a string, no
        preferences link) or the memo is full."""
        assert self._memo_names is not None
        key = tuple([context.get(name, _MISSING) for name in self._memo_names])
        made = self._memo.get(key, _MISSING)
        if made is not _MISSING:
            return made  # type: ignore[return-value]
        if self._memo_bytes >= MEMO_BYTES or len(self._memo) >= MEMO_ENTRIES:
            return None
        # Only strings: values that compare equal but render apart (1, 1.0, True) must
        # never share a render.
        if not all(type(value) is str for value in key) or not context.get("preferences_url"):
            return None
        # Rendered with a stand-in for both links, cut out again: the stand-in is random, so
        # no value a template shows can imitate it.
        stand_in = self._stand_in
        content = self._content(context, stand_in, stand_in)
        made = None
        text_head, found, text_tail = content.text.partition(_text_links(stand_in, stand_in))
        page_head = page_tail = None
        if content.html is not None:
            head, links, tail = content.html.partition(_html_links(stand_in, stand_in))
            if links and head.endswith("\n"):
                page_head, page_tail = qp_piece(head), qp_piece(tail)
        if found and not text_tail and (content.html is None or page_head is not None):
            subject = self._subject_line if self._static_subject is not None else _line(
                "Subject", format_unstructured("Subject", content.subject))
            made = _Made(subject, qp_piece(text_head), page_head, page_tail)
            self._memo_bytes += len(made.text.qp) + sum(
                len(piece.qp) for piece in (page_head, page_tail) if piece is not None)
        self._memo[key] = made
        return made

    def _bodies(self, made: _Made, context: Mapping[str, object], url: str) -> _Bodies | None:
        """The encoded parts from the shared part and this recipient's links; None when the
        part as a whole would be base64 (the caller then encodes it whole)."""
        preferences = str(context.get("preferences_url") or "")
        text = join_pieces((made.text, qp_piece(_text_links(url, preferences))))
        if text is None:
            return None
        page = None
        if made.page_head is not None and made.page_tail is not None:
            links = qp_piece(_html_links(html_escape(url), html_escape(preferences) if preferences else ""))
            body = join_pieces((made.page_head, links, made.page_tail))
            if body is None:
                return None
            page = (QUOTED_PRINTABLE, body)
        return QUOTED_PRINTABLE, text, page

    def _unsubscribe(self, context: Mapping[str, object]) -> tuple[str, str]:
        url = str(context.get("unsubscribe_url") or "")
        token = str(context.get("unsubscribe_token") or "")
        if not url or not token:
            raise ComplianceError(
                "a bulk email needs unsubscribe_url and unsubscribe_token in its context"
            )
        if "\r" in url or "\n" in url:
            raise HeaderInjectionError("List-Unsubscribe", url)
        if not _HEADER_URL.fullmatch(url):
            raise InvalidHeaderError("List-Unsubscribe", url, "not an http(s) URL fit for it")
        if not _TOKEN.fullmatch(token):
            raise InvalidHeaderError("List-Unsubscribe", token, "not an unsubscribe token")
        return url, token

    def _text_footer(self, text: str, url: str, preferences: str, tenant_name: str) -> str:
        if url in text and self._postal_address in text:
            return text
        lines = [text.rstrip("\n"), "", "-- "]
        if tenant_name:
            lines.append(tenant_name)
        lines.append(self._postal_address)
        return "\n".join(lines) + "\n" + _text_links(url, preferences)

    def _html_footer(self, page: str, url: str, preferences: str, tenant_name: str) -> str:
        url_html = html_escape(url)
        if url_html in page and self._postal_html in page:
            return page
        who = f"{html_escape(tenant_name)} &middot; " if tenant_name else ""
        footer = (
            '\n<div style="margin:24px 0 0;padding:16px 0 0;border-top:1px solid #dddddd;'
            'font-family:Arial,Helvetica,sans-serif;font-size:12px;line-height:18px;'
            'color:#555555">\n'
            f'<p style="margin:0 0 8px">{who}{self._postal_html}</p>\n'
            + _html_links(url_html, html_escape(preferences) if preferences else "")
            + '</div>\n'
        )
        end = page.rfind("</body>")
        if end < 0:  # rarer spellings: </BODY>, </body >
            ends = [match.start() for match in _BODY_END.finditer(page)]
            if not ends:
                return page + footer
            end = ends[-1]
        return page[:end] + footer + page[end:]


def _text_links(url: str, preferences: str) -> str:
    """The text footer's last lines: the only ones unique to a recipient."""
    links = f"Unsubscribe: {url}\n"
    if preferences:
        links += f"Email preferences: {preferences}\n"
    return links


def _html_links(url_html: str, preferences_html: str) -> str:
    """The HTML footer's line of links (escaped values): the only one unique to a recipient."""
    links = f'<a href="{url_html}" style="color:#555555">Unsubscribe</a>'
    if preferences_html:
        links += f' &middot; <a href="{preferences_html}" style="color:#555555">Email preferences</a>'
    return f'<p style="margin:0">{links}</p>\n'


def _normalise_lines(text: str) -> str:
    """LF line endings and a final newline: what the wire will carry (as CRLF)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def html_escape(value: str) -> str:
    return html.escape(value, quote=True)


def _line(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode("ascii")
