"""A small dealership where every gating rule has a contact that trips it.

Every fact is dated relative to the gating instant `AT`, which is tomorrow at 18:00 UTC
(10:00 or 11:00 in Los Angeles, 03:00 in Tokyo): in the future, so a `campaign send --at AT`
is allowed and sees every record the engine stamps "now" (an imported `opted_out=true`),
and at a fixed time of day, so the quiet-hours outcomes are the same on every day.
`scenario_at(now)` and `build(..., at=...)` give the same scenario for any other clock
(a test a year ahead).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

from tests.cli import ok

TENANT = """\
tenant: {tenant}
name: Acme Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
postal_address: "1 Main St, Springfield, CA 90000, USA"
classes:
  marketing: {{mode: opt_out}}
  survey: {{mode: opt_in}}
  transactional: {{mode: exempt}}
sms:
  opt_in_required: true
  opt_in_excluded_sources: [Fullpath]
reauthorization_days: {{sms: 365}}
review: {{period_days: 183, enforce: {enforce}}}
quiet_hours: {{start: "21:00", end: "08:00"}}
frequency_caps: [{{channel: sms, max: 1, per_hours: 24}}]
"""

PACIFIC = timezone(timedelta(hours=-7))  # how the dealership's staff write their instants

# How long before AT each fact happened (the story of the scenario).
REVIEWED = timedelta(days=54)  # every contact but E9 was reviewed 54 days before AT (period: 183)
REVOKED = timedelta(days=176, hours=1)  # E4's block of all email, E8's revoke: ~6 months before
GRANTED = timedelta(days=84, hours=1)  # the survey consents: ~3 months before
GRANTED_LONG_AGO = timedelta(days=541, hours=1)  # S4's grant: expired under {sms: 365}
STOPPED = timedelta(days=54, hours=1)  # S7's texted STOP
BEFORE_REVOCATIONS = timedelta(days=207, hours=18)  # an instant a month before E4's block and E8's revoke


def scenario_at(now: datetime) -> datetime:
    """The gating instant for a clock reading `now`: the next UTC day at 18:00:00Z."""
    if now.tzinfo is None:
        raise ValueError("scenario_at needs an aware datetime")
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(18), tzinfo=UTC)


def iso(instant: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ`, as `--at` and `defer_until` write instants."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(instant: datetime) -> str:
    """An event's `occurred_at` as the dealership writes it, with a -07:00 offset."""
    return instant.astimezone(PACIFIC).isoformat(timespec="seconds")


def reviewed_on(at: datetime) -> date:
    return (at - REVIEWED).date()


def contacts_csv(at: datetime) -> str:
    """The contacts file, dated relative to the gating instant `at`."""
    reviewed = reviewed_on(at).isoformat()
    return f"""\
external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at
E1,Ava,Smith,ava@example.com,(213) 555-0101,America/Los_Angeles,US,,Website,,{reviewed}
E2,Liam,Garcia,,(213) 555-0102,America/Los_Angeles,US,,Website,,{reviewed}
E3,Olivia,Nguyen,olivia@bad..example,(213) 555-0103,America/Los_Angeles,US,,Website,,{reviewed}
E4,Noah,Lee,noah@example.com,(213) 555-0104,America/Los_Angeles,US,,Website,,{reviewed}
E5,Emma,Brown,family@example.com,(213) 555-0105,America/Los_Angeles,US,,Website,,{reviewed}
E6,Mateo,Brown,family@Example.COM,(213) 555-0106,America/Los_Angeles,US,,Website,,{reviewed}
E7,Sofia,Patel,sofia@example.com,(213) 555-0107,America/Los_Angeles,US,,Website,true,{reviewed}
E8,Lucas,Kim,lucas@example.com,(213) 555-0108,America/Los_Angeles,US,,Website,,{reviewed}
E9,Mia,Rossi,mia@example.com,(213) 555-0109,America/Los_Angeles,US,,Website,,
S1,Ethan,Lee,ethan@example.com,(213) 555-0201,America/Los_Angeles,US,,Website,,{reviewed}
S2,Zoe,Kim,zoe@example.com,(213) 555-0202,America/Los_Angeles,US,,Website,,{reviewed}
S3,Jose,Diaz,jose@example.com,(213) 555-0203,America/Los_Angeles,US,,fullpath,,{reviewed}
S4,Wei,Chen,wei@example.com,(213) 555-0204,America/Los_Angeles,US,,Website,,{reviewed}
S5,Priya,Shah,priya@example.com,(213) 555-0205,Asia/Tokyo,US,,Website,,{reviewed}
S6,Chloe,Martin,chloe@example.com,555,America/Los_Angeles,US,,Website,,{reviewed}
S7,Hana,Sato,hana@example.com,(213) 555-0207,America/Los_Angeles,US,,Website,,{reviewed}
"""


def events_csv(at: datetime) -> str:
    """The consent history, dated relative to the gating instant `at`."""
    revoked, granted, old, stopped = local(at - REVOKED), local(at - GRANTED), local(at - GRANTED_LONG_AGO), local(at - STOPPED)
    return f"""\
external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note
E4,block,email,,,,email_link,{revoked},customer,,unsubscribe from everything
E8,revoke,email,marketing,first,,email_link,{revoked},customer,,
S1,grant,sms,survey,first,,web_form,{granted},web,consent,
S3,grant,email,survey,first,,web_form,{granted},web,consent,
S4,grant,sms,survey,first,,verbal,{old},sales,consent,over a year ago
S5,grant,sms,survey,first,,web_form,{granted},web,consent,
S7,grant,sms,survey,first,,web_form,{granted},web,consent,
S7,block,sms,,,,sms_keyword,{stopped},carrier,,STOP
"""


# Computed once, for the real current time: the instant every user of this module gates at.
AT_INSTANT = scenario_at(datetime.now(UTC))
AT = iso(AT_INSTANT)
CONTACTS = contacts_csv(AT_INSTANT)
EVENTS = events_csv(AT_INSTANT)

EMAIL_CAMPAIGN = """\
campaign: spring-offer
tenant: {tenant}
kind: bulk
channel: email
class: marketing
audience: {{external_id: [E1, E2, E3, E4, E5, E6, E7, E8, E9]}}
template: spring_offer
subject: "Your spring service offer"
sender: {{email: service@acme.example, name: Acme Service}}
"""

SMS_CAMPAIGN = """\
campaign: survey-texts
tenant: {tenant}
kind: bulk
channel: sms
class: survey
audience: {{external_id: [S1, S2, S3, S4, S5, S6, S7]}}
template: live_lead
sender: {{phone: "+15550001111"}}
"""


def build(directory: Path, db: str, tenant: str = "acme-motors", enforce_review: bool = True,
          at: datetime | None = None) -> dict[str, Path]:
    """Write the scenario's files and import them; dated relative to `at` (default: `AT`)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "tenant": directory / "tenant.yaml",
        "contacts": directory / "contacts.csv",
        "events": directory / "events.csv",
        "email": directory / "email.yaml",
        "sms": directory / "sms.yaml",
    }
    files["tenant"].write_text(TENANT.format(tenant=tenant, enforce=str(enforce_review).lower()))
    files["contacts"].write_text(CONTACTS if at is None else contacts_csv(at))
    files["events"].write_text(EVENTS if at is None else events_csv(at))
    files["email"].write_text(EMAIL_CAMPAIGN.format(tenant=tenant))
    files["sms"].write_text(SMS_CAMPAIGN.format(tenant=tenant))
    ok("db", "init", "--db", db)
    ok("tenant", "apply", files["tenant"], "--db", db)
    ok("contacts", "import", files["contacts"], "--tenant", tenant, "--db", db)
    ok("consent", "import", files["events"], "--tenant", tenant, "--db", db)
    return files
