"""Addresses as Consentry stores and compares them: emails and phone numbers.

One spelling per address everywhere (imports, consent events, webhooks, bounces), so a
ledger event about an address matches the contact point it is about (docs/architecture.md,
"Addresses"; FORMATS.md, "Addresses"):

- email: `local@domain` with exactly one `@`; stored with the domain lower-cased and the
  local part as given (mailbox names may be case-sensitive, domains never are). Valid when
  `email-validator` accepts its syntax. No DNS: an import must not depend on the network.
- phone: parsed by `phonenumbers` against a default region; a valid number is stored as
  E.164 with the time zones of its area, for quiet hours.

A value that is no address at all raises `AddressError`: an import rejects the row. A value
that has the shape of one but is not valid (`555`, a domain with `..`) comes back with
`is_valid` false and is stored as given, so gating reports it as `invalid_address` and the
marketer sees it instead of losing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_geographical_number, time_zones_for_number

from campaigns.errors import InputError
from engine.imports.phone_types import number_type
from gating.message import ADDRESS_KIND

__all__ = [
    "KIND_FOR_CHANNEL",
    "AddressError",
    "NormalizedAddress",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
]

# Channels that have a stored contact point, and the kind of that point.
KIND_FOR_CHANNEL = ADDRESS_KIND  # which address a channel uses is gating's to say

# A local part made only of these, in dot-atom form, is valid for email-validator whatever
# the domain (RFC 5322 atext is wider; anything else takes the full check).
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*\Z")
_EMAIL_MAX_LENGTH = 254  # RFC 5321 4.5.3.1.3, as email-validator counts it
_UNKNOWN_ZONE = "Etc/Unknown"
# phonenumbers compiles its metadata's patterns on every use unless asked to keep them;
# kept, parsing a number costs 12 % less (docs/benchmarks.md, "Third pass").
phonenumbers.enable_pattern_cache()

# The North American Numbering Plan's fast path (`_read_nanp`): the default regions whose
# reading of a number is the plain one (national prefix `1`, no transform, IDD `011`),
# taken from phonenumbers' own metadata so that a metadata update cannot widen it.
_NANP_REGIONS = frozenset(
    region
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]
    if (metadata := phonenumbers.PhoneMetadata.metadata_for_region(region)) is not None
    and metadata.national_prefix_for_parsing == "1"
    and metadata.national_prefix_transform_rule is None
    and metadata.international_prefix == "011"
)
# Digits and the separators people type between them; anything else takes the full parse.
_PLAIN_PHONE = re.compile(r"\+?[0-9 ().\-]{10,40}\Z")
_DROP_SEPARATORS = str.maketrans("", "", " ().-+")

# contact_points.zones is String(200). Only non-geographic numbers (toll-free, premium)
# get longer lists: every zone of their country, which locates nobody, so none is kept.
_ZONES_MAX_LENGTH = 200


class AddressError(InputError):
    """A value that is no email address or phone number at all (the row is rejected).

    `field` is left for the caller to fill in: the same value is a contact's `email` in one
    file and an event's `address` in another.
    """


@dataclass(frozen=True, slots=True)
class NormalizedAddress:
    """An address in its stored spelling; `kind` is None for channels without contact
    points (letter, social), whose addresses are kept as given."""

    kind: str | None
    address: str
    is_valid: bool
    zones: str | None = None


def normalize_email(text: str) -> tuple[str, bool]:
    """`(address, is_valid)`; raises AddressError unless the text is `local@domain`."""
    value = text.strip()
    local, _, domain = value.partition("@")
    if not local or not domain or "@" in domain:
        raise AddressError(f"{value!r} is not an email address (expected local@domain with one @)")
    domain = domain.lower()
    return f"{local}@{domain}", _is_valid_email(local, domain)


def _is_valid_email(local: str, domain: str) -> bool:
    # Most addresses in a contact list share a few domains, and email-validator spends most
    # of its time on the domain (IDNA, special-use names), so the domain's verdict is cached
    # and a plain local part is checked here. The result is exactly email-validator's
    # (tests/imports/test_addresses.py checks it against validate_email on generated
    # addresses); anything unusual (quotes, Unicode, punycode, lengths) takes the full path.
    if (
        _PLAIN_LOCAL.match(local)
        and domain.isascii()
        and "xn--" not in domain
        and len(local) + 1 + len(domain) <= _EMAIL_MAX_LENGTH
    ):
        return _is_valid_domain(domain)
    return _is_valid_syntax(f"{local}@{domain}")


@lru_cache(maxsize=65_536)
def _is_valid_domain(domain: str) -> bool:
    # "a@domain" is the shortest address with this domain: if it is too long, so is every
    # address with it, and the length of the real one is checked by the caller.
    return _is_valid_syntax(f"a@{domain}")


def _is_valid_syntax(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def normalize_phone(text: str, region: str) -> tuple[str, bool, str | None]:
    """`(address, is_valid, zones)`: E.164 for a valid number, else the text as given.

    `region` (ISO 3166 alpha-2) reads numbers written without a country code. Raises
    AddressError when phonenumbers cannot read the text as a number at all.
    """
    value = text.strip()
    number = _read_nanp(value, region)
    if number is None:
        try:
            number = phonenumbers.parse(value, region)
        except NumberParseException as exc:
            raise AddressError(f"{value!r} is not a phone number ({_parse_reason(exc)})") from None
    # The number's type decides validity (is_valid_number()'s own test: UNKNOWN means
    # invalid) and is what the time-zone lookup needs too: computing it once halves the
    # cost per row. phone_types.number_type is phonenumbers.number_type without its
    # repeated work.
    kind = number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return value, False, None
    address = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return address, True, _zones(number, kind)


def _read_nanp(value: str, region: str) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse(value, region)` for the common North American spellings, or None.

    `phonenumbers.parse` is general (extensions, letters, IDD prefixes, national prefixes
    of 240 regions) and costs ~22 µs; it is most of a row check's time. A ten-digit number
    with an area code that cannot start a prefix (2-9), typed with plain separators, as
    `(415) 555-0123`, `415.555.0123`, `1-415-555-0123` in a plain-NANP region or
    `+1 415 555 0123` in any, reads as +1 and those ten digits in every one of its steps.
    Anything else, or anything in doubt, returns None and takes the full parse.
    tests/imports/test_addresses.py checks this against `phonenumbers.parse`.
    """
    if not _PLAIN_PHONE.match(value):
        return None
    digits = value.translate(_DROP_SEPARATORS)
    if value[0] == "+" or len(digits) == 11:
        # +1 followed by ten digits reads the same in every region; 1 followed by ten
        # digits is the national prefix only where the default region says so.
        if len(digits) != 11 or digits[0] != "1" or (value[0] != "+" and region not in _NANP_REGIONS):
            return None
        digits = digits[1:]
    elif len(digits) != 10 or region not in _NANP_REGIONS:
        return None
    if digits[0] in "01":
        return None
    return phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))


def _zones(number: phonenumbers.PhoneNumber, number_type: int) -> str | None:
    assert number.country_code is not None  # phonenumbers.parse() always sets it
    if phonenumbers.is_number_type_geographical(number_type, number.country_code):
        zones = time_zones_for_geographical_number(number)
    else:
        zones = time_zones_for_number(number)
    joined = " ".join(zone for zone in zones if zone != _UNKNOWN_ZONE)
    return joined if joined and len(joined) <= _ZONES_MAX_LENGTH else None


_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "no digits of a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def _parse_reason(exc: NumberParseException) -> str:
    return _PARSE_REASONS.get(exc.error_type, "unreadable")


def normalize_address(text: str, channel: str | None, region: str) -> NormalizedAddress:
    """An address given for a channel, in the spelling of the matching contact point.

    `email` follows the email rules, `sms` and `voice` the phone rules (read in `region`);
    `*` or no channel: email when the text contains `@`, else phone. Other channels
    (letter, social) have no contact points: their addresses are kept as given.
    """
    if channel in (None, "", "*"):
        channel = "email" if "@" in text else "sms"
    kind = KIND_FOR_CHANNEL.get(channel)
    if kind == "email":
        address, is_valid = normalize_email(text)
        return NormalizedAddress("email", address, is_valid)
    if kind == "phone":
        address, is_valid, zones = normalize_phone(text, region)
        return NormalizedAddress("phone", address, is_valid, zones)
    return NormalizedAddress(None, text.strip(), True)
