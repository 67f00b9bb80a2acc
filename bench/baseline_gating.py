"""The straightforward way to gate: per recipient, walk the raw ledger events rule by rule.

What it is for: the yardstick of bench/bench_gating.py (gating/ must beat it by 10x) and an
independent oracle for tests/gating (same decisions, written from DESIGN.md section 2 with
none of gating/'s machinery: no compiled policy, no effect table, no bits, no caches).
It reads the tenant.yaml mapping as given and re-derives everything for each recipient,
as code written without a speed budget would. What it must never do: import gating.

Decisions are plain tuples: (decision, reason or None, until_us or None).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


def _zone(key):
    if not key or key == "Etc/Unknown":
        return None
    try:
        return ZoneInfo(key)
    except Exception:  # noqa: BLE001 - any bad name means "no zone"
        return None


def _covers(value, wanted, missing_covers):
    if value is None:
        return missing_covers
    return value == "*" or value == wanted


def _latest(events):
    best = None
    for event in events:
        if best is None or (event["at"], event["id"]) > (best["at"], best["id"]):
            best = event
    return best


def _minutes(text):
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _in_window(minute, start, end):
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


class Baseline:
    """Gate recipients of one message under one tenant.yaml mapping, the plain way."""

    def __init__(self, policy, kind, channel, class_code, party="first", is_opt_in_request=False):
        self.policy = policy
        self.kind = kind
        self.channel = channel
        self.class_code = class_code
        self.party = party
        self.is_opt_in_request = is_opt_in_request
        self.sent = set()

    def evaluate(self, contact_rows, ledger_rows, recent_sends, now_us):
        by_contact = defaultdict(list)
        for row in ledger_rows:
            by_contact[row[0]].append(row)
        return [self.decide(row, by_contact.get(row[0], []), (recent_sends or {}).get(row[0], 0), now_us)
                for row in contact_rows]

    def decide(self, contact, rows, recent, now_us):
        (contact_id, _external, timezone, lead_source, reviewed_at, address, valid, zones, shared) = contact
        events = []
        for row in rows:
            event = dict(zip(("contact", "id", "action", "channel", "class", "party", "address", "at"), row, strict=True))
            if event["at"] > now_us:
                continue
            if (event["address"] is not None and event["address"] != address
                    and event["action"] in ("grant", "revoke", "block", "unblock")):
                continue  # an event on an address that is no longer the contact's
            events.append(event)
        policy = self.policy
        bulk = self.kind == "bulk"
        classes = policy.get("classes") or {"marketing": {}, "service": {}, "survey": {}, "transactional": {"mode": "exempt"}}
        mode = (classes[self.class_code] or {}).get("mode") or policy.get("regime", "opt_out")

        if not address:
            return ("suppress", "no_address", None)
        if not valid:
            return ("suppress", "invalid_address", None)
        block = _latest(e for e in events if e["action"] in ("block", "unblock")
                        and _covers(e["channel"], self.channel, e["action"] == "block"))
        if block is not None and block["action"] == "block":
            return ("suppress", "do_not_contact", None)
        sms = policy.get("sms") or {}
        if self.channel == "sms" and sms.get("opt_in_required") and not self.is_opt_in_request:
            excluded = [source.lower() for source in sms.get("opt_in_excluded_sources") or []]
            if not (lead_source and lead_source.lower() in excluded):
                if not any(e["action"] == "grant" and e["channel"] in ("sms", "*") for e in events):
                    return ("suppress", "awaiting_sms_opt_in", None)
        if not bulk and not self.is_opt_in_request:
            return ("send", None, None)
        if bulk and shared and address in self.sent:
            return ("suppress", "duplicate_address", None)
        if bulk and mode != "exempt":
            opt = _latest(e for e in events if e["action"] in ("opt_out", "opt_in"))
            if opt is not None and opt["action"] == "opt_out":
                return ("suppress", "opted_out", None)
            consent = _latest(
                e for e in events
                if e["action"] in ("grant", "revoke")
                and _covers(e["channel"], self.channel, e["action"] == "revoke")
                and _covers(e["class"], self.class_code, e["action"] == "revoke")
                and (e["party"] in (self.party, "*") or (e["party"] is None and self.party == "first"))
            )
            granted = consent is not None and consent["action"] == "grant"
            if mode == "opt_in" and not granted:
                return ("suppress", "no_consent", None)
            if mode == "opt_out" and consent is not None and not granted:
                return ("suppress", "consent_revoked", None)
            days = (policy.get("reauthorization_days") or {}).get(self.channel)
            if mode == "opt_in" and days is not None and now_us - consent["at"] > days * DAY_US:
                return ("suppress", "consent_expired", None)
            review = policy.get("review") or {}
            if review.get("enforce"):
                dates = [e["at"] for e in events if e["action"] == "review"]
                if reviewed_at is not None:
                    dates.append(reviewed_at)
                period = review.get("period_days", 183) * DAY_US
                if not dates or now_us - max(dates) > period:
                    return ("suppress", "review_overdue", None)
            for cap in policy.get("frequency_caps") or []:
                if cap["channel"] == self.channel and recent >= cap["max"]:
                    return ("suppress", "frequency_capped", None)
        quiet = policy.get("quiet_hours")
        if self.channel in ("sms", "voice") and quiet and quiet["start"] != quiet["end"]:
            until = self._quiet_until(quiet, timezone, zones, now_us)
            if until is not None:
                return ("defer", "quiet_hours", until)
        if shared:
            self.sent.add(address)
        return ("send", None, None)

    def _quiet_until(self, quiet, timezone, zones, now_us):
        start, end = _minutes(quiet["start"]), _minutes(quiet["end"])
        where = [_zone(timezone)] if _zone(timezone) else []
        if not where:
            for key in (zones or "").split():
                if _zone(key) and _zone(key) not in where:
                    where.append(_zone(key))
        if not where:
            where = [ZoneInfo(self.policy.get("timezone", "UTC"))]
        instant = now_us
        for _ in range(8):
            moved = False
            for zone in where:
                local = (EPOCH + timedelta(microseconds=instant)).astimezone(zone)
                minute = local.hour * 60 + local.minute
                if not _in_window(minute, start, end):
                    continue
                day = local.date() + timedelta(days=1 if start > end and minute >= start else 0)
                wall = datetime.combine(day, time(end // 60, end % 60), tzinfo=zone)
                until = (wall - EPOCH) // timedelta(microseconds=1)
                if until <= instant:
                    until = (wall.replace(fold=1) - EPOCH) // timedelta(microseconds=1)
                elif (EPOCH + timedelta(microseconds=until)).astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                    # the end was skipped by spring forward: walk to the jump, a second at a time
                    until = (wall.replace(fold=1) - EPOCH) // timedelta(microseconds=1)
                    while True:
                        local = (EPOCH + timedelta(microseconds=until)).astimezone(zone)
                        if not _in_window(local.hour * 60 + local.minute, start, end):
                            break
                        until += 1_000_000
                instant, moved = until, True
            if not moved:
                break
        return None if instant == now_us else instant
