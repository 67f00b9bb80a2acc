"""Conversions between the edges' datetimes/strings and the core's integer microseconds.

Every instant inside Consentry is an int of microseconds since the Unix epoch, UTC
(see docs/architecture.md). Only this module turns them into or out of other forms.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000


def to_us(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError("datetime has no UTC offset")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def iso_z(value: int | None) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (FORMATS.md's defer_until), empty for None."""
    if value is None:
        return ""
    return from_us(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_micro_z(value: int | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` (webhook bodies), None for None. isoformat is C code:
    an import writes a webhook body per ledger row, three instants each."""
    if value is None:
        return None
    return (_EPOCH + timedelta(microseconds=value)).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_instant(text: str, *, require_offset: bool = True) -> int:
    """ISO 8601 date-time with an offset (or `Z`) → microseconds."""
    text = text.strip()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        if require_offset:
            raise ValueError(f"{text!r} has no UTC offset (add Z or +HH:MM)")
        moment = moment.replace(tzinfo=UTC)
    return to_us(moment)


def parse_date_or_instant(text: str, zone: str) -> int:
    """A date (start of that day in `zone`) or a date-time (naive ones read in `zone`)."""
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return to_us(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)))
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return to_us(moment)
