"""Rule 12: quiet hours in recipient-local time, across midnight, DST and several zones."""

from __future__ import annotations

import pytest
from gating_cases import MINUTE, at, bulk, contact, gate, individual

from gating import Defer, Reason
from gating.quiet_hours import QuietWindow, local_zones, quiet_until
from gating.quiet_hours import load_zone as zone

NIGHT = {"start": "21:00", "end": "08:00"}


def quiet(now: str, *, window=NIGHT, channel: str = "sms", **fields):
    """The decision for a bulk text at `now` under `window`."""
    return gate(bulk(channel), contact(channel=channel, **fields), now=at(now), quiet_hours=window)


# (id, now (UTC), contact fields, window, expected defer_until (UTC) or None for send)
CASES = [
    ("afternoon in New York", "2024-06-15T18:00:00Z", {"timezone": "America/New_York"}, NIGHT, None),
    ("start is inclusive", "2024-06-16T01:00:00Z", {"timezone": "America/New_York"}, NIGHT, "2024-06-16T12:00:00Z"),
    ("a minute before the start", "2024-06-16T00:59:59Z", {"timezone": "America/New_York"}, NIGHT, None),
    ("end is exclusive", "2024-06-16T12:00:00Z", {"timezone": "America/New_York"}, NIGHT, None),
    ("a microsecond before the end", "2024-06-16T11:59:59.999999Z", {"timezone": "America/New_York"}, NIGHT,
     "2024-06-16T12:00:00Z"),
    ("after midnight", "2024-06-16T07:30:00Z", {"timezone": "America/New_York"}, NIGHT, "2024-06-16T12:00:00Z"),
    ("window within one day", "2024-06-15T16:30:00Z", {"timezone": "America/New_York"}, {"start": "12:00", "end": "13:00"},
     "2024-06-15T17:00:00Z"),
    ("Tokyo evening", "2024-06-15T13:00:00Z", {"timezone": "Asia/Tokyo"}, NIGHT, "2024-06-15T23:00:00Z"),
    # DST, America/New_York: spring forward 2024-03-10 02:00 EST -> 03:00 EDT.
    ("spring forward: night ends at 08:00 EDT", "2024-03-10T06:30:00Z", {"timezone": "America/New_York"}, NIGHT,
     "2024-03-10T12:00:00Z"),
    ("spring forward: evening before", "2024-03-10T03:00:00Z", {"timezone": "America/New_York"}, NIGHT, "2024-03-10T12:00:00Z"),
    ("spring forward: end in the gap resolves to the jump", "2024-03-10T06:00:00Z", {"timezone": "America/New_York"},
     {"start": "22:00", "end": "02:30"}, "2024-03-10T07:00:00Z"),
    ("spring forward: window inside the gap never starts", "2024-03-10T06:59:00Z", {"timezone": "America/New_York"},
     {"start": "02:10", "end": "02:40"}, None),
    # fall back 2024-11-03 02:00 EDT -> 01:00 EST.
    ("fall back: night ends at 08:00 EST", "2024-11-03T03:00:00Z", {"timezone": "America/New_York"}, NIGHT,
     "2024-11-03T13:00:00Z"),
    ("fall back: end in the repeated hour, first pass", "2024-11-03T05:10:00Z", {"timezone": "America/New_York"},
     {"start": "23:00", "end": "01:30"}, "2024-11-03T05:30:00Z"),
    ("fall back: end in the repeated hour, second pass", "2024-11-03T06:10:00Z", {"timezone": "America/New_York"},
     {"start": "23:00", "end": "01:30"}, "2024-11-03T06:30:00Z"),
    # Europe/London: spring forward 2024-03-31 01:00 GMT -> 02:00 BST.
    ("London spring forward", "2024-03-31T00:30:00Z", {"timezone": "Europe/London"}, NIGHT, "2024-03-31T07:00:00Z"),
    # Southern hemisphere: Sydney falls back 2024-04-07 03:00 AEDT -> 02:00 AEST.
    ("Sydney fall back", "2024-04-06T12:00:00Z", {"timezone": "Australia/Sydney"}, NIGHT, "2024-04-06T22:00:00Z"),
    # Where the recipient is.
    ("phone zone when the contact has none", "2024-06-16T05:00:00Z", {"address_zones": "America/Los_Angeles"}, NIGHT,
     "2024-06-16T15:00:00Z"),
    ("contact zone beats phone zone", "2024-06-16T05:00:00Z",
     {"timezone": "Asia/Tokyo", "address_zones": "America/Los_Angeles"}, NIGHT, None),
    ("invalid contact zone falls back to the phone's", "2024-06-16T05:00:00Z",
     {"timezone": "Mars/Olympus_Mons", "address_zones": "America/Los_Angeles"}, NIGHT, "2024-06-16T15:00:00Z"),
    ("Etc/Unknown is ignored: tenant zone", "2024-06-16T03:00:00Z", {"address_zones": "Etc/Unknown"}, NIGHT,
     "2024-06-16T12:00:00Z"),
    ("nothing known: tenant zone (fail closed)", "2024-06-16T03:00:00Z", {}, NIGHT, "2024-06-16T12:00:00Z"),
    # Several zones: quiet if any is, until none is.
    ("two zones, only New York quiet: wait for Los Angeles too", "2024-06-16T02:00:00Z",
     {"address_zones": "America/New_York America/Los_Angeles"}, NIGHT, "2024-06-16T15:00:00Z"),
    ("two zones, only Los Angeles quiet", "2024-06-16T14:00:00Z",
     {"address_zones": "America/New_York America/Los_Angeles"}, NIGHT, "2024-06-16T15:00:00Z"),
    ("two zones, neither quiet", "2024-06-16T16:00:00Z", {"address_zones": "America/New_York America/Los_Angeles"}, NIGHT, None),
    ("several zones with an unknown one", "2024-06-16T13:30:00Z",
     {"address_zones": "Etc/Unknown America/Chicago America/Denver"}, NIGHT, "2024-06-16T14:00:00Z"),
]


@pytest.mark.parametrize(("now", "fields", "window", "until"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quiet_hours(now, fields, window, until):
    decision = quiet(now, window=window, **fields)
    if until is None:
        assert decision.decision == "send"
    else:
        assert decision == Defer(at(until), Reason.QUIET_HOURS)


def test_several_zones_with_an_unknown_one_sends_when_all_are_awake():
    # 14:00 UTC = 09:00 Chicago, 08:00 Denver: Denver just woke up.
    assert quiet("2024-06-16T14:00:00Z", address_zones="Etc/Unknown America/Chicago America/Denver").decision == "send"


@pytest.mark.parametrize("message", [bulk("email"), bulk("letter"), bulk("social"), individual("sms"), individual("voice")])
def test_never_deferred(message):
    row = contact(channel=message.channel, timezone="America/New_York")
    decision = gate(message, row, now=at("2024-06-16T03:00:00Z"), quiet_hours=NIGHT)
    assert decision.decision == "send"


def test_voice_and_exempt_sms_are_deferred():
    night = at("2024-06-16T03:00:00Z")
    for message in (bulk("voice"), bulk("sms", "transactional")):
        row = contact(channel=message.channel, timezone="America/New_York")
        assert gate(message, row, now=night, quiet_hours=NIGHT).reason is Reason.QUIET_HOURS


def test_equal_start_and_end_means_no_quiet_hours():
    assert quiet("2024-06-16T03:00:00Z", window={"start": "08:00", "end": "08:00"}).decision == "send"


def test_zone_resolution():
    fallback = zone("UTC")
    assert local_zones("Europe/Paris", "America/New_York", fallback) == (zone("Europe/Paris"),)
    assert local_zones("", "America/New_York America/New_York", fallback) == (zone("America/New_York"),)
    assert local_zones("../../etc/passwd", "America", fallback) == (fallback,)
    assert local_zones(None, None, fallback) == (fallback,)


def test_zones_covering_the_whole_day_still_return_a_later_instant():
    # 18:00-08:00 in two zones twelve hours apart leaves no instant quiet-free.
    window = QuietWindow(18 * 60, 8 * 60)
    zones = (zone("Pacific/Honolulu"), zone("Asia/Dubai"))
    now = at("2024-06-16T04:00:00Z")
    until = quiet_until(window, zones, now)
    assert until is not None and now < until <= now + 8 * 24 * 60 * MINUTE
