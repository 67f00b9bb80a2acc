"""A generated car dealership: tenant policy, contacts, consent events and two campaigns.

Used by `make demo` and the benchmarks. Deterministic for a seed, streamed to disk (a million
contacts never sit in memory), and realistic enough to exercise every gating rule: opted-out
customers, STOP blocks, missing and invalid addresses, leads waiting for SMS opt-in, Fullpath
leads exempt from it, revoked and expired consent, shared family addresses.

Every date is relative to the `now` the caller passes (the instant the data describes), so
the data means the same on any day: reviews and consent events fall between about one and
eleven months before `now`, and the "old consent" grants are 630 days old (expired under
`reauthorization_days: {sms: 365}`). Nothing here reads the clock.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

FIRST = ["Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Zoë", "José", "Chloé", "Wei", "Priya"]
LAST = ["Smith", "Garcia", "Nguyen", "Johnson", "Brown", "Martinez", "Lee", "Patel", "Kim", "O'Brien", "Müller", "Rossi"]
SOURCES = ["Website", "Fullpath", "Walk-in", "Phone", "AutoTrader", "Cars.com"]
ZONES = ["America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York", "", "", ""]
AREA = ["213", "310", "415", "512", "617", "702", "303", "312", "206", "305"]
PACIFIC = timezone(timedelta(hours=-7))  # how the dealership's staff write their instants
OLD_CONSENT = timedelta(days=630)  # older than the policy's 365-day SMS reauthorization

TENANT_YAML = """\
tenant: {tenant}
name: {name}
regime: opt_out
country: US
timezone: America/Los_Angeles
postal_address: "1 Main St, Springfield, CA 90000, USA"
classes:
  marketing: {{mode: opt_out}}
  service: {{mode: opt_out}}
  survey: {{mode: opt_in}}
  transactional: {{mode: exempt}}
sms:
  opt_in_required: true
  opt_in_excluded_sources: [Fullpath]
  opt_out_footer: "Reply STOP to opt out of texts from this number."
reauthorization_days: {{sms: 365}}
review: {{period_days: 183, enforce: false}}
quiet_hours: {{start: "21:00", end: "08:00"}}
frequency_caps: [{{channel: sms, max: 3, per_hours: 24}}]
"""

EDM_YAML = """\
campaign: {code}
tenant: {tenant}
kind: bulk
channel: email
class: marketing
party: first
template: spring_offer
subject: "{{{{ first_name or 'Hello' }}}}, your spring service offer"
sender: {{email: service@acme.example, name: Acme Service}}
rate: {{per_second: {rate}}}
"""

SMS_YAML = """\
campaign: {code}
tenant: {tenant}
kind: bulk
channel: sms
class: marketing
party: first
audience:
  lead_source: [Website, Fullpath, Phone]
template: live_lead
sender: {{phone: "+15550001111"}}
agent_name: Sam
rate: {{per_second: {rate}}}
"""

CONTACT_COLUMNS = ["external_id", "first_name", "last_name", "email", "phone", "timezone", "country", "region", "lead_source", "opted_out", "reviewed_at"]
EVENT_COLUMNS = ["external_id", "action", "channel", "class", "party", "address", "method", "occurred_at", "actor", "basis", "note"]


@dataclass(frozen=True, slots=True)
class Dealership:
    directory: Path
    tenant_yaml: Path
    contacts_csv: Path
    events_csv: Path
    edm_yaml: Path
    sms_yaml: Path
    tenant: str


def _phone(rng: random.Random, index: int) -> str:
    number = f"{rng.choice(AREA)}{rng.randint(200, 999)}{index % 10000:04d}"
    style = index % 4
    if style == 0:
        return f"({number[:3]}) {number[3:6]}-{number[6:]}"
    if style == 1:
        return f"+1{number}"
    if style == 2:
        return f"{number[:3]}.{number[3:6]}.{number[6:]}"
    return number


def _days_ago(rng: random.Random) -> int:
    """27 to 324 days before today: one of ten months back, then a day within it."""
    return 27 + 30 * rng.randint(0, 9) + rng.randint(0, 27)


def _today(now: datetime) -> date:
    """The dealership's calendar day at `now`."""
    return now.astimezone(PACIFIC).date()


def contact_row(rng: random.Random, index: int, now: datetime) -> list[str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    roll = rng.random()
    email = f"{first.lower()}.{index}@example.com".replace("ë", "e").replace("é", "e").replace("ö", "o").replace("ü", "u").replace("'", "")
    if roll < 0.03:
        email = ""  # no email on file
    elif roll < 0.04:
        email = f"user{index}@bad..example"  # parses, not deliverable: gated invalid_address
    elif roll < 0.06:
        email = f"family{index // 2}@example.net"  # shared by two contacts
    phone = _phone(rng, index)
    roll = rng.random()
    if roll < 0.05:
        phone = ""
    elif roll < 0.06:
        phone = "555"
    opted_out = "true" if rng.random() < 0.1 else ""
    reviewed = (_today(now) - timedelta(days=_days_ago(rng))).isoformat() if rng.random() < 0.5 else ""
    return [f"C{index:07d}", first, last, email, phone, rng.choice(ZONES), "US", "", rng.choice(SOURCES), opted_out, reviewed]


def event_rows(rng: random.Random, index: int, contact: list[str], now: datetime) -> list[list[str]]:
    external_id, phone = contact[0], contact[4]
    events: list[list[str]] = []
    roll = rng.random()
    day = _today(now) - timedelta(days=_days_ago(rng))
    when = datetime.combine(day, time(rng.randint(8, 20)), PACIFIC).isoformat()
    old = datetime.combine(_today(now) - OLD_CONSENT, time(10), PACIFIC).isoformat()
    if roll < 0.45:
        events.append([external_id, "grant", "sms", "*", "first", "", "web_form", when, "web", "consent", ""])
    elif roll < 0.50:
        events.append([external_id, "grant", "sms", "*", "first", "", "verbal", old, "sales", "consent", "old consent"])
    if rng.random() < 0.08:
        events.append([external_id, "block", "sms", "", "", "", "sms_keyword", when, "carrier", "", "STOP"])
    if rng.random() < 0.05:
        events.append([external_id, "revoke", "email", "marketing", "first", "", "email_link", when, "customer", "", ""])
    if rng.random() < 0.1:
        events.append([external_id, "grant", "email", "survey", "first", "", "web_form", when, "web", "consent", ""])
    if rng.random() < 0.03 and phone:
        events.append([external_id, "block", "*", "", "", "", "verbal", when, "sales", "", "do not contact"])
    return events


def write_dealership(directory: Path, contacts: int = 10_000, seed: int = 7, tenant: str = "acme-motors", rate: int = 500, *,
                     now: datetime) -> Dealership:
    """Write the dealership's files, every date relative to `now` (an aware datetime)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("write_dealership: now must be an aware datetime")
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = Dealership(
        directory, directory / "tenant.yaml", directory / "contacts.csv", directory / "events.csv",
        directory / "edm.yaml", directory / "live-leads.yaml", tenant,
    )
    paths.tenant_yaml.write_text(TENANT_YAML.format(tenant=tenant, name="Acme Motors"), encoding="utf-8")
    paths.edm_yaml.write_text(EDM_YAML.format(code="spring-service-offer", tenant=tenant, rate=rate), encoding="utf-8")
    paths.sms_yaml.write_text(SMS_YAML.format(code="live-lead-followup", tenant=tenant, rate=rate), encoding="utf-8")
    with paths.contacts_csv.open("w", newline="", encoding="utf-8") as cf, paths.events_csv.open("w", newline="", encoding="utf-8") as ef:
        contacts_out, events_out = csv.writer(cf), csv.writer(ef)
        contacts_out.writerow(CONTACT_COLUMNS)
        events_out.writerow(EVENT_COLUMNS)
        for index in range(1, contacts + 1):
            row = contact_row(rng, index, now)
            contacts_out.writerow(row)
            events_out.writerows(event_rows(rng, index, row, now))
    return paths
