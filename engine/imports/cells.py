"""Parsing one cell of an import file: flags, countries, time zones, instants, lengths.

Each parser takes the trimmed text of a non-empty cell and returns the stored value or
raises `CellError` with a message for the user; the row checkers add the line and field.
Pure functions (they run in worker processes), with small bounded caches.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import phonenumbers

from campaigns.tenant_file import is_timezone
from engine.timeutil import parse_date_or_instant, parse_instant

__all__ = [
    "CellError",
    "check_length",
    "parse_country",
    "parse_date_or_datetime",
    "parse_flag",
    "parse_instant_with_offset",
    "parse_timezone",
]

_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False, "": False}


class CellError(ValueError):
    """A cell whose value cannot be stored; the message says why."""


def check_length(text: str, limit: int) -> str:
    """The text, when it fits the column (PostgreSQL enforces VARCHAR lengths)."""
    if len(text) > limit:
        raise CellError(f"is longer than {limit} characters")
    return text


def parse_flag(text: str) -> bool:
    """`true`/`false`/`yes`/`no`/`1`/`0`, any case; empty is false."""
    try:
        return _FLAGS[text.lower()]
    except KeyError:
        raise CellError(f"{text!r} is not one of true, false, yes, no, 1, 0") from None


def parse_country(text: str) -> str:
    """An ISO 3166 alpha-2 code that phonenumbers knows, upper-cased."""
    code = text.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise CellError(f"{text!r} is not an ISO 3166 alpha-2 country code")
    return code


def parse_timezone(text: str) -> str:
    """An IANA time zone name (as given: zone names are case-sensitive files)."""
    if not _is_timezone(text):
        raise CellError(f"{text!r} is not an IANA time zone (e.g. America/New_York)")
    return text


@lru_cache(maxsize=4096)
def _is_timezone(text: str) -> bool:
    return is_timezone(text)


def parse_date_or_datetime(text: str, zone: str) -> int:
    """ISO 8601 date (start of that day in `zone`) or date-time (naive ones in `zone`)."""
    try:
        return parse_date_or_instant(text, zone)
    except (ValueError, OverflowError):
        raise CellError(f"{text!r} is not an ISO 8601 date or date-time") from None


def parse_instant_with_offset(text: str) -> int:
    """ISO 8601 date-time with a UTC offset or `Z`, as microseconds."""
    try:
        return parse_instant(text, require_offset=True)
    except (ValueError, OverflowError):
        if _looks_naive(text):
            raise CellError(f"{text!r} has no UTC offset (add Z or +HH:MM)") from None
        raise CellError(f"{text!r} is not an ISO 8601 date-time with an offset") from None


def _looks_naive(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is None
    except ValueError:
        return False
