"""Header values: injection-proof, RFC 2047 encoded, folded within limits."""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.render import HeaderInjectionError, InvalidHeaderError
from engine.render.headers import (
    check_address,
    clean_display_text,
    encode_words,
    format_address,
    format_date,
    format_message_id,
    format_unstructured,
)

_WORD = re.compile(r"=\?utf-8\?([qb])\?([^?]*)\?=")


def parse_headers(*lines: str) -> email.message.EmailMessage:
    raw = "".join(f"{line}\r\n" for line in lines) + "\r\nbody\r\n"
    return email.message_from_bytes(raw.encode("ascii"), policy=email.policy.default)


def decode_word(word: str) -> bytes:
    match = _WORD.fullmatch(word)
    assert match, word
    kind, payload = match.groups()
    if kind == "b":
        return base64.b64decode(payload)
    return quopri.decodestring(payload.replace("_", " ").encode("ascii"), header=True)


# --- addresses ---------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "victim@example.com\r\nBcc: everyone@example.com",
    "victim@example.com\nBcc: x@example.com",
    "victim@example.com\r",
])
def test_address_with_line_break_is_refused(address: str) -> None:
    with pytest.raises(HeaderInjectionError):
        check_address("To", address)
    with pytest.raises(HeaderInjectionError):
        format_address("To", address, "Name")


@pytest.mark.parametrize("address", [
    "no-at-sign", "@example.com", "a b@example.com", "a@exa mple.com", "<a@example.com>",
    "a@example.com, b@example.com", "a@example.com>", "jöe@example.com", "a@",
])
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidHeaderError):
        check_address("To", address)


def test_internationalised_domain_is_written_in_ascii() -> None:
    assert check_address("To", "joe@bücher.example") == "joe@xn--bcher-kva.example"


def test_plain_name() -> None:
    assert format_address("To", "ann@example.com", "Ann Lee") == "Ann Lee <ann@example.com>"
    assert format_address("To", "ann@example.com", "") == "ann@example.com"
    assert format_address("To", "ann@example.com", None) == "ann@example.com"


def test_name_with_specials_is_quoted() -> None:
    value = format_address("To", "ann@example.com", 'Lee, Ann "Annie" \\ Jr.')
    assert value == '"Lee, Ann \\"Annie\\" \\\\ Jr." <ann@example.com>'
    parsed = parse_headers(f"To: {value}")["To"].addresses[0]
    assert parsed.display_name == 'Lee, Ann "Annie" \\ Jr.'
    assert parsed.addr_spec == "ann@example.com"


def test_name_line_breaks_cannot_add_headers() -> None:
    value = format_address("To", "ann@example.com", "Ann\r\nBcc: everyone@example.com")
    message = parse_headers(f"To: {value}", "Subject: s")
    assert message["Bcc"] is None
    assert message["To"].addresses[0].display_name == "Ann Bcc: everyone@example.com"
    assert message["To"].addresses[0].addr_spec == "ann@example.com"


def test_non_ascii_name_is_encoded() -> None:
    value = format_address("To", "zoe@example.com", "Zoë Ångström")
    assert value.isascii() and "=?utf-8?" in value
    assert parse_headers(f"To: {value}")["To"].addresses[0].display_name == "Zoë Ångström"


# --- free text ---------------------------------------------------------------------


def test_clean_display_text() -> None:
    assert clean_display_text("a\r\nb\rc\nd\x00e\x85f\u2028g\th ") == "a b c d e f g h"


def test_ascii_subject_is_kept_readable_and_folded() -> None:
    text = "Your spring service offer " * 6
    value = format_unstructured("Subject", text)
    assert "=?" not in value
    lines = f"Subject: {value}".split("\r\n")
    assert len(lines) > 1 and all(len(line) <= 78 for line in lines)
    assert str(parse_headers(f"Subject: {value}")["Subject"]) == text.strip()


def test_text_that_looks_like_an_encoded_word_is_encoded() -> None:
    text = "=?utf-8?q?hello?="
    value = format_unstructured("Subject", text)
    assert str(parse_headers(f"Subject: {value}")["Subject"]) == text


def test_injection_through_a_rendered_subject_is_folded_away() -> None:
    value = format_unstructured("Subject", "Hi\r\nBcc: everyone@example.com\r\n\r\nbody")
    message = parse_headers(f"Subject: {value}")
    assert message["Bcc"] is None
    assert str(message["Subject"]) == "Hi Bcc: everyone@example.com body"


def test_encoded_words_split_at_character_boundaries() -> None:
    text = "€" * 40 + "😀" * 30 + "日本語のテキスト" * 5
    words = encode_words(text, 60, phrase=False)
    assert len(words) > 3
    assert len(words[0]) <= 60 and all(len(word) <= 75 for word in words)
    # Each word is whole characters on its own.
    assert "".join(decode_word(word).decode("utf-8") for word in words) == text


def test_q_encoding_for_mostly_ascii_text() -> None:
    (word,) = encode_words("Café offer", phrase=False)
    assert word == "=?utf-8?q?Caf=C3=A9_offer?="
    # In a display name, Q leaves only letters, digits and !*+-/ unencoded (RFC 2047 5.3).
    (word,) = encode_words("Zoë Smith-Jones, Jr", phrase=True)
    assert word == "=?utf-8?q?Zo=C3=AB_Smith-Jones=2C_Jr?="


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=300), name=st.text(max_size=120))
@example(subject="a" * 200, name="b" * 200)
@example(subject="x\r\nBcc: y@example.com", name="Eve\r\nBcc: y@example.com")
@example(subject=" leading  and  double  spaces ", name='"quoted" (comment) <angle>')
def test_any_text_round_trips_and_never_adds_a_header(subject: str, name: str) -> None:
    to_value = format_address("To", "rcpt@example.com", name)
    subject_value = format_unstructured("Subject", subject)
    raw_lines = [f"To: {to_value}", f"Subject: {subject_value}"]
    for line in "\r\n".join(raw_lines).split("\r\n"):
        assert len(line) <= 78
        assert line.isascii()
    message = parse_headers(*raw_lines)
    assert list(message.keys()) == ["To", "Subject"]
    assert str(message["Subject"]) == clean_display_text(subject)
    (address,) = message["To"].addresses
    assert address.addr_spec == "rcpt@example.com"
    expected = clean_display_text(name)
    phrase = to_value.rpartition(" <")[0].replace("\r\n", "") if expected else ""
    if "=?" in phrase:
        # Python's address parser puts a space between adjacent encoded words of a display
        # name (its own generator's output too); RFC 2047 section 6.2 says to drop it, as
        # the legacy decoder does.
        assert str(make_header(decode_header(phrase))) == expected
    else:
        assert address.display_name in (expected, " ".join(expected.split()))


# --- ids and dates -------------------------------------------------------------------


def test_message_id() -> None:
    assert format_message_id("c11.42@acme.example") == "<c11.42@acme.example>"
    assert format_message_id("<c11.42@acme.example>") == "<c11.42@acme.example>"
    with pytest.raises(HeaderInjectionError):
        format_message_id("<a@b>\r\nBcc: x@y")
    for bad in ("no-at", "<a@b> <c@d>", "a b@c", "<a@b"):
        if bad == "<a@b":
            assert format_message_id(bad) == "<a@b>"
            continue
        with pytest.raises(InvalidHeaderError):
            format_message_id(bad)


def test_date_from_microseconds_and_datetimes() -> None:
    assert format_date(1_700_000_000_123_456) == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert format_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000"
    pacific = timezone(timedelta(hours=-8))
    assert format_date(datetime(2024, 3, 1, 9, 30, tzinfo=pacific)) == (
        "Fri, 01 Mar 2024 09:30:00 -0800"
    )
    parsed = parse_headers(f"Date: {format_date(1_700_000_000_000_000)}")["Date"].datetime
    assert parsed == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    with pytest.raises(ValueError):
        format_date(datetime(2024, 1, 1))
