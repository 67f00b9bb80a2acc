"""A dealership with its own sender identities (tenant.yaml `senders`) and five customers."""

from __future__ import annotations

from pathlib import Path

from tests.cli import ok

TENANT = """\
tenant: acme-motors
name: Acme Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
postal_address: "1 Main St, Springfield, CA 90000, USA"
classes:
  marketing: {mode: opt_out}
  service: {mode: opt_out}
  transactional: {mode: exempt}
senders:
  domains: [acme-motors.example]
  bulk: {email: offers@acme-motors.example, name: Acme Motors}
  reply_to: sales@acme-motors.example
  return_path: bounces@acme-motors.example
  unsubscribe: unsubscribe@acme-motors.example
  people:
    jo: {email: jo@acme-motors.example, name: Jo Smith, phone: "+15550100001"}
"""

CONTACTS = """\
external_id,first_name,last_name,email,phone
C1,Ava,Smith,ava@example.com,+12135550101
C2,Ben,Ortiz,ben@example.com,+12135550102
C3,Cy,Young,cy@example.com,+12135550103
C4,Dee,Park,dee@example.com,+12135550104
C5,Eve,Moss,eve@example.com,+12135550105
"""

# No sender: it sends as the tenant's senders.bulk.
CAMPAIGN = """\
campaign: spring-offer
tenant: acme-motors
kind: bulk
channel: email
class: marketing
template: spring_offer
subject: "Your spring service offer"
"""


def build(directory: Path, db: str) -> dict[str, Path]:
    files = {name: directory / name for name in ("tenant.yaml", "contacts.csv", "campaign.yaml")}
    files["tenant.yaml"].write_text(TENANT)
    files["contacts.csv"].write_text(CONTACTS)
    files["campaign.yaml"].write_text(CAMPAIGN)
    ok("db", "init", "--db", db)
    ok("tenant", "apply", files["tenant.yaml"], "--db", db)
    ok("contacts", "import", files["contacts.csv"], "--tenant", "acme-motors", "--db", db)
    return files
