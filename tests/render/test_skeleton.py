"""The email skeleton: bytes that Python's own parser reads back exactly."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.render import (
    CampaignContext,
    ComplianceError,
    EmailSkeleton,
    HeaderInjectionError,
    InvalidHeaderError,
    TemplateSource,
    compile_campaign_templates,
    recipient_context,
)
from tests.render.conftest import POSTAL

DATE_US = 1_700_000_000_000_000  # Tue, 14 Nov 2023 22:13:20 +0000

TEXT = """Hi {{ first_name or "there" }},

Your {{ tenant_name }} spring offer is here.
{% if last_name %}
(for the {{ last_name }} household)
{% endif %}
See you soon.
"""
HTML = """<!DOCTYPE html>
<html><body>
<p>Hi {{ first_name or "there" }},</p>
<p>Your {{ tenant_name }} spring offer is here.</p>
</body></html>
"""


def skeleton(
    *,
    text: str = TEXT,
    html: str | None = HTML,
    subject: str = "{{ first_name or 'Hello' }}, your spring offer",
    bulk: bool = True,
    variables: tuple[str, ...] = (),
    **options: object,
) -> EmailSkeleton:
    source = TemplateSource(channel="email", name="offer", text=text, text_origin="offer.txt",
                            html=html, html_origin="offer.html" if html is not None else None)
    templates = compile_campaign_templates(source, subject=subject, variables=variables)
    settings_: dict[str, object] = {
        "sender_email": "service@acme.example",
        "sender_name": "Acme Service",
        "bulk": bulk,
        "postal_address": POSTAL if bulk else None,
        "unsubscribe_mailto": "unsubscribe@acme.example" if bulk else None,
    }
    settings_.update(options)
    return EmailSkeleton.from_templates(templates, **settings_)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def test_bulk_message_parses_back_exactly(campaign_context: CampaignContext) -> None:
    sk = skeleton()
    context = campaign_context.for_recipient(42, first_name="Ann", last_name="Lee",
                                             email="ann@example.com")
    data = sk.render("ann@example.com", "Ann Lee", context, "c11.42@acme.example", DATE_US)
    content = sk.render_content(context)
    message = parse(data)
    token = context["unsubscribe_token"]

    assert list(message.keys()) == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
    ]
    assert message["From"].addresses[0].display_name == "Acme Service"
    assert message["From"].addresses[0].addr_spec == "service@acme.example"
    assert message["To"].addresses[0].display_name == "Ann Lee"
    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    assert str(message["Subject"]) == "Ann, your spring offer" == content.subject
    assert message["Date"].datetime == datetime(2023, 11, 14, 22, 13, 20,
                                                tzinfo=UTC)
    assert message["Message-ID"] == "<c11.42@acme.example>"
    assert str(message["List-Unsubscribe"]) == (
        f"<mailto:unsubscribe@acme.example?subject=unsubscribe-{token}>, "
        f"<https://links.acme.example/u/{token}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    assert not message.defects

    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert text_part.get_content_charset() == "utf-8"
    assert html_part.get_content_type() == "text/html"
    assert not text_part.defects and not html_part.defects
    assert lf(text_part.get_content()) == content.text
    assert lf(html_part.get_content()) == content.html
    assert content.html is not None

    # The compliance footer, in both parts.
    assert content.text.startswith("Hi Ann,\n\nYour Acme Motors spring offer is here.\n"
                                   "(for the Lee household)\nSee you soon.")
    assert POSTAL in content.text and context["unsubscribe_url"] in content.text
    assert context["preferences_url"] in content.text
    assert POSTAL in content.html and f'href="{context["unsubscribe_url"]}"' in content.html
    assert content.html.index("Unsubscribe") < content.html.index("</body>")


def test_wire_format(campaign_context: CampaignContext) -> None:
    context = campaign_context.for_recipient(1, first_name="Ann")
    long_line = "word " * 200
    sk = skeleton(text=TEXT + long_line + "\n.\nFrom here\ntrailing spaces   \n", variables=())
    data = sk.render("ann@example.com", "Ann", context, "a@acme.example", DATE_US)
    assert re.search(rb"(?<!\r)\n", data) is None, "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    head, body = data.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n"):
        assert len(line) <= (998 if line.startswith(b"List-Unsubscribe: <mailto") else 78)
    for line in body.split(b"\r\n"):
        assert len(line) <= 78, line
    text_part = next(parse(data).iter_parts())
    assert lf(text_part.get_content()) == sk.render_content(context).text


def test_boundary_cannot_occur_in_a_body(campaign_context: CampaignContext) -> None:
    sk = skeleton(text="{{ trap }}\n", html="<p>{{ trap }}</p>", variables=("trap",))
    context = campaign_context.for_recipient(1, extra={"trap": "x"})
    first = parse(sk.render("a@example.com", None, context, "a@b", DATE_US))
    boundary = first.get_boundary()
    assert boundary and boundary.startswith("=_")
    trap = f"\n--{boundary}\nContent-Type: text/plain\n\nevil\n--{boundary}--\n"
    context = campaign_context.for_recipient(1, extra={"trap": trap})
    message = parse(sk.render("a@example.com", None, context, "a@b", DATE_US))
    parts = list(message.iter_parts())
    assert len(parts) == 2
    assert trap.strip() in lf(parts[0].get_content())


def test_individual_message_has_no_list_headers_and_no_footer() -> None:
    sk = skeleton(bulk=False)
    context = recipient_context(first_name="Ann")
    data = sk.render("ann@example.com", "Ann", context, "a@acme.example", DATE_US)
    message = parse(data)
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert b"List-Unsubscribe" not in data
    text_part, html_part = message.iter_parts()
    assert lf(text_part.get_content()).rstrip("\n").endswith("See you soon.")
    assert "Unsubscribe" not in html_part.get_content()


def test_text_only_template_is_a_single_part(campaign_context: CampaignContext) -> None:
    sk = skeleton(html=None)
    context = campaign_context.for_recipient(5, first_name="Ann")
    message = parse(sk.render("ann@example.com", "Ann", context, "a@b", DATE_US))
    assert message.get_content_type() == "text/plain" and not message.is_multipart()
    assert lf(message.get_content()) == sk.render_content(context).text
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_non_ascii_everywhere(campaign_context: CampaignContext) -> None:
    sk = skeleton(sender_name="Äcme Sërvice — 春", subject="{{ first_name }}さん、春のご案内 🚗")
    context = campaign_context.for_recipient(7, first_name="山田 花子" * 3,
                                             last_name="Ångström")
    data = sk.render("hanako@example.jp", "山田 花子 Ångström", context, "x@y", DATE_US)
    assert header_block(data).isascii()
    message = parse(data)
    content = sk.render_content(context)
    assert str(message["Subject"]) == content.subject == "山田 花子" * 3 + "さん、春のご案内 🚗"
    assert message["From"].addresses[0].display_name == "Äcme Sërvice — 春"
    text_part, html_part = message.iter_parts()
    assert lf(text_part.get_content()) == content.text
    assert lf(html_part.get_content()) == content.html


def test_mostly_non_ascii_body_goes_base64(campaign_context: CampaignContext) -> None:
    sk = skeleton(text="{{ first_name }}様\n" + "春のサービスキャンペーンのご案内です。\n" * 20)
    context = campaign_context.for_recipient(7, first_name="花子")
    data = sk.render("a@example.jp", None, context, "x@y", DATE_US)
    message = parse(data)
    text_part = next(message.iter_parts())
    assert text_part["Content-Transfer-Encoding"] == "base64"
    assert lf(text_part.get_content()) == sk.render_content(context).text
    html_part = list(message.iter_parts())[1]
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize("to_addr", [
    "ann@example.com\r\nBcc: all@example.com",
    "ann@example.com\nX-Evil: 1",
])
def test_address_injection_is_refused(to_addr: str, campaign_context: CampaignContext) -> None:
    with pytest.raises(HeaderInjectionError):
        skeleton().render(to_addr, "Ann", campaign_context.for_recipient(1), "a@b", DATE_US)


def test_names_and_subjects_cannot_inject(campaign_context: CampaignContext) -> None:
    evil = "Ann\r\nBcc: all@example.com\r\n\r\nfake body"
    sk = skeleton(subject="Offer for {{ first_name }}")
    context = campaign_context.for_recipient(1, first_name=evil)
    message = parse(sk.render("ann@example.com", evil, context, "a@b", DATE_US))
    assert message["Bcc"] is None
    assert list(message.keys()).count("To") == 1
    assert str(message["Subject"]) == "Offer for Ann Bcc: all@example.com fake body"
    assert message["To"].addresses[0].addr_spec == "ann@example.com"


def test_bad_values_in_the_context_are_refused(campaign_context: CampaignContext) -> None:
    sk = skeleton()
    good = campaign_context.for_recipient(1)
    with pytest.raises(HeaderInjectionError):
        sk.render("a@example.com", None, {**good, "unsubscribe_url": good["unsubscribe_url"]
                                          + "\r\nBcc: x@y"}, "a@b", DATE_US)
    with pytest.raises(InvalidHeaderError):
        sk.render("a@example.com", None, {**good, "unsubscribe_url": "javascript:x"}, "a@b",
                  DATE_US)
    with pytest.raises(InvalidHeaderError):
        sk.render("a@example.com", None, {**good, "unsubscribe_token": "a>b"}, "a@b", DATE_US)
    with pytest.raises(ComplianceError):
        sk.render("a@example.com", None, recipient_context(), "a@b", DATE_US)
    with pytest.raises(HeaderInjectionError):
        sk.render("a@example.com", None, good, "a@b\r\nBcc: x@y", DATE_US)


def test_bulk_needs_a_postal_address() -> None:
    with pytest.raises(ComplianceError):
        skeleton(postal_address=None)
    with pytest.raises(ComplianceError):
        skeleton(postal_address="  \n ")
    skeleton(bulk=False, postal_address=None)


def test_sender_is_checked_once() -> None:
    with pytest.raises(HeaderInjectionError):
        skeleton(sender_email="a@b.example\r\nBcc: x@y")
    with pytest.raises(HeaderInjectionError):
        skeleton(unsubscribe_mailto="u@b.example\r\nBcc: x@y")


def test_without_mailto_only_the_https_link(campaign_context: CampaignContext) -> None:
    sk = skeleton(unsubscribe_mailto=None)
    context = campaign_context.for_recipient(1)
    message = parse(sk.render("a@example.com", None, context, "a@b", DATE_US))
    assert str(message["List-Unsubscribe"]) == f"<{context['unsubscribe_url']}>"


def test_footer_is_not_repeated(campaign_context: CampaignContext) -> None:
    sk = skeleton(
        text="Hi\n{{ postal_address }} | {{ unsubscribe_url }}\n",
        html="<p>{{ postal_address }} <a href=\"{{ unsubscribe_url }}\">stop</a></p>",
    )
    content = sk.render_content(campaign_context.for_recipient(1))
    assert content.text.count(POSTAL) == 1 and "Unsubscribe:" not in content.text
    assert content.html is not None and content.html.count(POSTAL) == 1


def test_footer_goes_before_any_body_end_tag(campaign_context: CampaignContext) -> None:
    context = campaign_context.for_recipient(1)
    upper = skeleton(html="<HTML><BODY><p>x</p></BODY></HTML>").render_content(context).html
    assert upper is not None and upper.endswith("</BODY></HTML>\n") and POSTAL in upper
    bare = skeleton(html="<p>x</p>").render_content(context).html
    assert bare is not None and bare.startswith("<p>x</p>") and bare.rstrip().endswith("</div>")


def test_static_subject_and_aware_dates(campaign_context: CampaignContext) -> None:
    sk = skeleton(subject="Spring offer")
    moment = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-8)))
    message = parse(sk.render("a@example.com", None, campaign_context.for_recipient(1),
                              "a@b", moment))
    assert str(message["Subject"]) == "Spring offer"
    assert message["Date"].datetime == moment


@settings(max_examples=150, deadline=None)
@given(first_name=st.text(max_size=80), last_name=st.text(max_size=80))
def test_any_contact_name_gives_a_well_formed_message(first_name: str, last_name: str) -> None:
    context = CampaignContext(1, 2, "email", b"k", "https://x.example",
                              postal_address=POSTAL, tenant_name="Acme").for_recipient(
        9, first_name=first_name, last_name=last_name)
    sk = _PROPERTY_SKELETON
    data = sk.render("a@example.com", f"{first_name} {last_name}", context, "a@b", DATE_US)
    assert re.search(rb"(?<!\r)\n", data) is None and data.isascii()
    message = parse(data)
    assert list(message.keys()) == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
    ]
    content = sk.render_content(context)
    assert str(message["Subject"]) == content.subject
    text_part, html_part = message.iter_parts()
    assert lf(text_part.get_content()) == lf(content.text.replace("\r", "\n"))
    assert lf(html_part.get_content()) == lf((content.html or "").replace("\r", "\n"))


_PROPERTY_SKELETON = skeleton()


# Pieces that exercise quoted-printable's line rules: soft breaks (long runs), trailing
# blanks, a lone dot, "=" and non-ASCII, and every kind of line end.
_BODY_TEXT = st.lists(st.sampled_from(["a", "b", " ", "=", ".", "\t", "\r", "\n", "\r\n", "é", "x" * 90, " \n", ".\n"]),
                      max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(first=_BODY_TEXT, second=_BODY_TEXT)
def test_bodies_encoded_line_by_line_from_the_memo_are_the_same_bytes(first: str, second: str) -> None:
    # The skeleton remembers each line's quoted-printable across recipients: whatever the
    # memo holds, a body must come out exactly as encoding it whole would.
    from engine.render.mime import encode_body

    memo: dict[bytes, bytes] = {}
    for text in (first, second, first):
        assert encode_body(text, memo) == encode_body(text)


# -- renders shared by recipients with the same values (EmailSkeleton._made) --------------

_BOUNDARY = re.compile(rb"=_consentry_[0-9a-f]{24}")
_NAMES = st.one_of(st.sampled_from(["Ava", "", "José", "Zoë"]), _BODY_TEXT, st.text(max_size=40))
_CONTEXT = CampaignContext(tenant_id=3, campaign_id=11, channel="email", secret=b"k" * 32,
                           public_url="https://links.acme.example", tenant_name="Acme Motors",
                           postal_address=POSTAL, sender_name="Acme Service")
# A template in a script Latin-1 cannot write: its parts go out as base64, shared or not.
_GREEK = "Γεια σου {{ first_name }}, η ανοιξιάτικη προσφορά σας είναι εδώ.\n"


def _one_boundary(data: bytes) -> bytes:
    return _BOUNDARY.sub(b"=_consentry_BOUNDARY", data)


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.tuples(_NAMES, _NAMES), min_size=1, max_size=6), greek=st.booleans(),
       html=st.sampled_from([HTML, None, "<p>no body tag {{ first_name }}</p>", "<body>x</body>  {{ last_name }}\n"]))
def test_a_shared_render_gives_every_recipient_the_bytes_of_its_own_render(
        names: list[tuple[str, str]], greek: bool, html: str | None) -> None:
    # Recipients whose templates read the same values share one render and its encoding,
    # and only their links differ: each message must be exactly what rendering it alone
    # gives, for any names (soft breaks, "=", lone dots, non-ASCII, base64 parts).
    text = _GREEK if greek else TEXT
    shared = skeleton(text=text, html=html)
    alone = skeleton(text=text, html=html, remember=False)
    for contact_id, (first, last) in enumerate(names * 2, start=1):
        context = _CONTEXT.for_recipient(contact_id, first_name=first, last_name=last, email="a@example.com")
        assert _one_boundary(shared.render("a@example.com", None, context, "a@b", DATE_US)) == _one_boundary(
            alone.render("a@example.com", None, context, "a@b", DATE_US))


def test_a_template_left_to_chance_is_rendered_for_every_recipient() -> None:
    sk = skeleton(text="Your lucky number: {{ range(100000) | random }}\n", html=None)
    texts = {sk.render_content(_CONTEXT.for_recipient(n, first_name="Ava")).text for n in range(1, 6)}
    messages = {
        parse(sk.render("a@example.com", None, _CONTEXT.for_recipient(n, first_name="Ava"), "a@b", DATE_US))
        .get_content().splitlines()[0] for n in range(1, 6)
    }
    assert len(texts) > 1 and len(messages) > 1


def test_a_template_showing_the_recipients_address_still_gets_it_right() -> None:
    sk = skeleton(text="This offer was sent to {{ email }}.\n", html=None)
    bodies = [
        parse(sk.render(address, None, _CONTEXT.for_recipient(n, first_name="Ava", email=address), "a@b", DATE_US))
        .get_content().splitlines()[0]
        for n, address in enumerate(["a@example.com", "b@example.com"], start=1)
    ]
    assert bodies == ["This offer was sent to a@example.com.", "This offer was sent to b@example.com."]
