"""A small dealership where every gating rule has a contact that trips it."""

from __future__ import annotations

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

# 2026-11-24T18:00Z is 10:00 in Los Angeles and 03:00 in Tokyo.
AT = "2026-11-24T18:00:00Z"

CONTACTS = """\
external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at
E1,Ava,Smith,ava@example.com,(213) 555-0101,America/Los_Angeles,US,,Website,,2026-10-01
E2,Liam,Garcia,,(213) 555-0102,America/Los_Angeles,US,,Website,,2026-10-01
E3,Olivia,Nguyen,olivia@bad..example,(213) 555-0103,America/Los_Angeles,US,,Website,,2026-10-01
E4,Noah,Lee,noah@example.com,(213) 555-0104,America/Los_Angeles,US,,Website,,2026-10-01
E5,Emma,Brown,family@example.com,(213) 555-0105,America/Los_Angeles,US,,Website,,2026-10-01
E6,Mateo,Brown,family@Example.COM,(213) 555-0106,America/Los_Angeles,US,,Website,,2026-10-01
E7,Sofia,Patel,sofia@example.com,(213) 555-0107,America/Los_Angeles,US,,Website,true,2026-10-01
E8,Lucas,Kim,lucas@example.com,(213) 555-0108,America/Los_Angeles,US,,Website,,2026-10-01
E9,Mia,Rossi,mia@example.com,(213) 555-0109,America/Los_Angeles,US,,Website,,
S1,Ethan,Lee,ethan@example.com,(213) 555-0201,America/Los_Angeles,US,,Website,,2026-10-01
S2,Zoe,Kim,zoe@example.com,(213) 555-0202,America/Los_Angeles,US,,Website,,2026-10-01
S3,Jose,Diaz,jose@example.com,(213) 555-0203,America/Los_Angeles,US,,fullpath,,2026-10-01
S4,Wei,Chen,wei@example.com,(213) 555-0204,America/Los_Angeles,US,,Website,,2026-10-01
S5,Priya,Shah,priya@example.com,(213) 555-0205,Asia/Tokyo,US,,Website,,2026-10-01
S6,Chloe,Martin,chloe@example.com,555,America/Los_Angeles,US,,Website,,2026-10-01
S7,Hana,Sato,hana@example.com,(213) 555-0207,America/Los_Angeles,US,,Website,,2026-10-01
"""

EVENTS = """\
external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note
E4,block,email,,,,email_link,2026-06-01T10:00:00-07:00,customer,,unsubscribe from everything
E8,revoke,email,marketing,first,,email_link,2026-06-01T10:00:00-07:00,customer,,
S1,grant,sms,survey,first,,web_form,2026-09-01T10:00:00-07:00,web,consent,
S3,grant,email,survey,first,,web_form,2026-09-01T10:00:00-07:00,web,consent,
S4,grant,sms,survey,first,,verbal,2025-06-01T10:00:00-07:00,sales,consent,over a year ago
S5,grant,sms,survey,first,,web_form,2026-09-01T10:00:00-07:00,web,consent,
S7,grant,sms,survey,first,,web_form,2026-09-01T10:00:00-07:00,web,consent,
S7,block,sms,,,,sms_keyword,2026-10-01T10:00:00-07:00,carrier,,STOP
"""

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


def build(directory: Path, db: str, tenant: str = "acme-motors", enforce_review: bool = True) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "tenant": directory / "tenant.yaml",
        "contacts": directory / "contacts.csv",
        "events": directory / "events.csv",
        "email": directory / "email.yaml",
        "sms": directory / "sms.yaml",
    }
    files["tenant"].write_text(TENANT.format(tenant=tenant, enforce=str(enforce_review).lower()))
    files["contacts"].write_text(CONTACTS)
    files["events"].write_text(EVENTS)
    files["email"].write_text(EMAIL_CAMPAIGN.format(tenant=tenant))
    files["sms"].write_text(SMS_CAMPAIGN.format(tenant=tenant))
    ok("db", "init", "--db", db)
    ok("tenant", "apply", files["tenant"], "--db", db)
    ok("contacts", "import", files["contacts"], "--tenant", tenant, "--db", db)
    ok("consent", "import", files["events"], "--tenant", tenant, "--db", db)
    return files
