"""Address normalisation: table-driven cases, and properties against the libraries' own verdicts."""

from __future__ import annotations

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given
from hypothesis import strategies as st
from phonenumbers.timezone import time_zones_for_number

from engine.imports import (
    AddressError,
    NormalizedAddress,
    normalize_address,
    normalize_email,
    normalize_phone,
)
from engine.imports.addresses import _read_nanp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ann.Lee@Example.COM", ("Ann.Lee@example.com", True)),
        ("  ann+tag@example.co.uk ", ("ann+tag@example.co.uk", True)),
        ("ann@bad..example", ("ann@bad..example", False)),
        ("ann lee@example.com", ("ann lee@example.com", False)),
        ("ann@localhost", ("ann@localhost", False)),
        ('"ann"@example.com', ('"ann"@example.com', False)),
        ("josé@Exämple.com", ("josé@exämple.com", True)),
        ("a" * 250 + "@example.com", ("a" * 250 + "@example.com", False)),
    ],
)
def test_email(text, expected):
    assert normalize_email(text) == expected


@pytest.mark.parametrize("text", ["", "ann", "@example.com", "ann@", "a@b@example.com", "  @  "])
def test_not_an_email_address(text):
    with pytest.raises(AddressError, match="is not an email address"):
        normalize_email(text)


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("(415) 555-0123", "US", ("+14155550123", True, "America/Los_Angeles")),
        ("415.555.0123", "US", ("+14155550123", True, "America/Los_Angeles")),
        ("+1 212-555-0199", "GB", ("+12125550199", True, "America/New_York")),
        ("020 7946 0958", "GB", ("+442079460958", True, "Europe/London")),
        ("07911 123456", "GB", ("+447911123456", True, "Europe/Guernsey Europe/Isle_of_Man Europe/Jersey Europe/London")),
        ("07700 900123", "GB", ("07700 900123", False, None)),  # Ofcom's range for drama
        (" 555 ", "US", ("555", False, None)),
        ("+1 800 555 1212", "US", ("+18005551212", True, None)),  # toll-free: the whole country
    ],
)
def test_phone(text, region, expected):
    assert normalize_phone(text, region) == expected


@pytest.mark.parametrize("text", ["", "call me", "+999 12345", "1"])
def test_not_a_phone_number(text):
    with pytest.raises(AddressError, match="is not a phone number"):
        normalize_phone(text, "US")


@pytest.mark.parametrize(
    ("text", "channel", "expected"),
    [
        ("A@Example.com", "email", NormalizedAddress("email", "A@example.com", True)),
        ("(415) 555-0123", "sms", NormalizedAddress("phone", "+14155550123", True, "America/Los_Angeles")),
        ("(415) 555-0123", "voice", NormalizedAddress("phone", "+14155550123", True, "America/Los_Angeles")),
        ("a@example.com", "*", NormalizedAddress("email", "a@example.com", True)),
        ("555", "*", NormalizedAddress("phone", "555", False)),
        ("a@example.com", None, NormalizedAddress("email", "a@example.com", True)),
        (" 1 Main St ", "letter", NormalizedAddress(None, "1 Main St", True)),
    ],
)
def test_address_by_channel(text, channel, expected):
    assert normalize_address(text, channel, "US") == expected


# --- the fast paths agree with the libraries ---------------------------------------------

_LOCAL = st.text(alphabet="abcXYZ019._%+-!#\"'() éü", min_size=1, max_size=70)
_DOMAIN = st.one_of(
    st.text(alphabet="abcXYZ019.-_ éü", min_size=1, max_size=30),
    st.builds(lambda label, tld: f"{label}.{tld}", st.text("abcxyz019-", min_size=1, max_size=250),
              st.sampled_from(["com", "COM", "co.uk", "test", "local", "xn--p1ai", "1"])),
)


def _library_verdict(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@given(local=_LOCAL, domain=_DOMAIN)
@example(local="a", domain="example.com")
@example(local="a" * 64, domain="b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com")
@example(local="a.b", domain="xn--bcher-kva.de")
@example(local="a..b", domain="example.com")
def test_email_validity_is_email_validators(local, domain):
    text = f"{local}@{domain}"
    if "@" in local or not local.strip() or not domain.strip():
        return
    address, is_valid = normalize_email(text)
    assert is_valid == _library_verdict(address)


_REGIONS = st.sampled_from(["US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "MX"])
_DIGITS = st.text(alphabet="0123456789", min_size=3, max_size=14)
_FORMATS = st.sampled_from(["{}", "+{}", "({}) ", "{}-", "+1 {}", "+44 {}", "00{}"])


@given(digits=_DIGITS, region=_REGIONS, shape=_FORMATS)
@example(digits="4155550123", region="US", shape="{}")
@example(digits="8005551212", region="US", shape="{}")
def test_phone_is_is_valid_number_and_time_zones_for_number(digits, region, shape):
    _assert_read_as_phonenumbers_reads_it(shape.format(digits), region)


def _assert_read_as_phonenumbers_reads_it(text: str, region: str) -> None:
    """normalize_phone gives what phonenumbers' own parse, validity and zones give."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        with pytest.raises(AddressError):
            normalize_phone(text, region)
        return
    if not phonenumbers.is_valid_number(number):
        assert normalize_phone(text, region) == (text.strip(), False, None)
        return
    zones = " ".join(z for z in time_zones_for_number(number) if z != "Etc/Unknown")
    expected_zones = zones if zones and len(zones) <= 200 else None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(text, region) == (e164, True, expected_zones)


# --- the North American fast path reads numbers as phonenumbers.parse does ----------------

_NANP_DEFAULTS = st.sampled_from(["US", "CA", "DO", "JM", "PR", "BS", "AG", "GB", "AU", "DE", "IN"])
_SEPARATORS = st.text(alphabet=" ().-", max_size=2)


@st.composite
def _typed_numbers(draw) -> str:
    """Digits as people type them: separators anywhere, maybe a leading + or 1."""
    lead = draw(st.sampled_from(["", "+", "+1", "1", "+1 ", "1-", "(", "+(", "011", "0"]))
    digits = draw(st.one_of(
        st.text(alphabet="0123456789", min_size=9, max_size=12),
        # ten digits that could be an area code and a number: what the fast path takes
        st.builds(lambda first, rest: first + rest, st.sampled_from("23456789"),
                  st.text(alphabet="0123456789", min_size=9, max_size=9)),
    ))
    pieces = [lead]
    for digit in digits:
        pieces.append(draw(_SEPARATORS) + digit)
    return "".join(pieces) + draw(_SEPARATORS)


@given(text=_typed_numbers(), region=_NANP_DEFAULTS)
@example(text="1-212-555-0123", region="CA")
@example(text="1-212-555-0123", region="BS")  # a prefix-rewriting region: the full parse
@example(text="011 212 555 0123", region="US")  # an IDD prefix, not a number
@example(text="+1 112 555 0123", region="US")
def test_typed_north_american_numbers_read_as_phonenumbers_reads_them(text, region):
    _assert_read_as_phonenumbers_reads_it(text, region)


@given(text=_typed_numbers(), region=_NANP_DEFAULTS)
def test_the_fast_path_returns_phonenumbers_own_number(text, region):
    number = _read_nanp(text, region)
    if number is not None:
        assert number == phonenumbers.parse(text, region)


@pytest.mark.parametrize(
    ("text", "region"),
    [("(415) 555-0123", "US"), ("415.555.0123", "CA"), ("1-415-555-0123", "US"), ("+1 415 555 0123", "GB"),
     ("4155550123", "PR"), ("+14155550123", "AU")],
)
def test_the_common_north_american_spellings_take_the_fast_path(text, region):
    # Without this the two properties above could pass with the fast path never taken.
    assert _read_nanp(text, region) == phonenumbers.parse(text, region)
    assert _read_nanp(text, region) is not None


@pytest.mark.parametrize(
    ("text", "region"),
    [("1-415-555-0123", "GB"), ("415 555 0123", "GB"), ("0114155550123", "US"), ("1415555012", "US"),
     ("+44 20 7946 0958", "US"), ("415-555-0123 x12", "US"), ("+1 415 555 0123 4", "US")],
)
def test_other_spellings_take_the_full_parse(text, region):
    assert _read_nanp(text, region) is None
