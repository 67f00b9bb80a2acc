"""Quiet hours: is it night where the recipient is, and when does the night end?

What it is for: rule 12. A window is wall-clock minutes in the recipient's zone, start
inclusive, end exclusive, possibly crossing midnight (21:00-08:00). The recipient's zones
are, in order: the contact's own time zone; else the zones of the phone number; else the
tenant's, so quiet hours fail closed (a recipient never escapes them for lack of data).

Daylight saving: the window is wall-clock time, so its length in real time changes on
transition nights, and a defer lasts until the first instant the wall clock is outside
the window. An end that does not exist (spring forward: 02:30 on a night that skips
02:00-03:00) resolves forward to the moment the clocks jump (03:00 local): from then on
the wall clock is past the end. An end that exists twice (fall back) is its first
occurrence, unless that is not after the instant being deferred, then its second.

What it must never do: read the clock (`now_us` is a parameter), cache anything (the
state builder works a verdict out once per zone set per batch, where `now` is fixed), or
log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
ONE_DAY = timedelta(days=1)

# phonenumbers answers "Etc/Unknown" for numbers it cannot place.
UNKNOWN_ZONE = "Etc/Unknown"

# Several zones can chase each other (zone A's night ends inside zone B's); each pass
# moves the instant forward to a window end, and real zone sets settle in two or three.
_MAX_PASSES = 8


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """Quiet from `start` (inclusive) to `end` (exclusive), minutes after local midnight."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # crosses midnight

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def load_zone(key: str | None) -> ZoneInfo | None:
    """The zone named `key`, or None when it names no zone (empty, unknown, a directory)."""
    if not key or key == UNKNOWN_ZONE:
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_zones(timezone: str | None, phone_zones: str | None, fallback: ZoneInfo) -> tuple[ZoneInfo, ...]:
    """Where the recipient is: contact zone, else the phone's zones, else the tenant's.

    An invalid contact zone falls through to the next source; unknown names among the
    phone's space-separated zones are dropped.
    """
    zone = load_zone(timezone)
    if zone is not None:
        return (zone,)
    if phone_zones:
        zones: list[ZoneInfo] = []
        for key in phone_zones.split():
            zone = load_zone(key)
            if zone is not None and zone not in zones:
                zones.append(zone)
        if zones:
            return tuple(zones)
    return (fallback,)


def to_local(instant_us: int, zone: ZoneInfo) -> datetime:
    """The wall-clock time at `instant_us` in `zone`."""
    return (EPOCH + timedelta(microseconds=instant_us)).astimezone(zone)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // ONE_US


def is_quiet(window: QuietWindow, zone: ZoneInfo, instant_us: int) -> bool:
    local = to_local(instant_us, zone)
    return window.contains(local.hour * 60 + local.minute)


def window_end(window: QuietWindow, zone: ZoneInfo, instant_us: int) -> int | None:
    """The end of the quiet window `instant_us` is in, or None when it is not quiet."""
    local = to_local(instant_us, zone)
    minute = local.hour * 60 + local.minute
    if not window.contains(minute):
        return None
    day: date = local.date()
    if window.start > window.end and minute >= window.start:
        day += ONE_DAY  # the evening part of a window that ends tomorrow morning
    end = datetime.combine(day, time(window.end // 60, window.end % 60), tzinfo=zone)
    until = to_us(end)
    if until <= instant_us:
        return to_us(end.replace(fold=1))  # fall back: the end's second occurrence
    if to_local(until, zone).replace(tzinfo=None) != end.replace(tzinfo=None):
        # Spring forward skipped the end: the window is over the moment the clocks jump
        # past it. That instant lies between the end read with the offset after the jump
        # (still quiet) and with the offset before it (already past); find it exactly.
        quiet, past = max(instant_us, to_us(end.replace(fold=1))), until
        while past - quiet > 1:
            middle = (quiet + past) // 2
            if is_quiet(window, zone, middle):
                quiet = middle
            else:
                past = middle
        until = past
    return until


def quiet_until(window: QuietWindow, zones: tuple[ZoneInfo, ...], now_us: int) -> int | None:
    """None when no zone is quiet at `now_us`; else the first instant none of them is.

    That is the latest window end when the windows overlap, and always outside every
    zone's window, unless the zones' windows together cover the whole day (no instant is
    quiet-free); then the instant reached after a bounded number of passes.
    """
    instant = now_us
    for _ in range(_MAX_PASSES):
        moved = False
        for zone in zones:
            end = window_end(window, zone, instant)
            if end is not None:
                instant, moved = end, True
        if not moved:
            break
    return None if instant == now_us else instant
