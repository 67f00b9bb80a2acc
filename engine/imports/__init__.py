"""Imports of contacts and consent events, and what the rest of the engine shares with them.

- `normalize_email`, `normalize_phone`, `normalize_address`: the one stored spelling of an
  address (webhooks and bounces must match contact points and ledger events);
- `record_events`: the one way into the consent ledger (keeps the contacts' projections);
- `import_contacts`, `import_consent_events`: the streaming, atomic CSV imports behind
  `consentry contacts import` and `consentry consent import` (docs/imports.md).
"""

from engine.imports.addresses import (
    KIND_FOR_CHANNEL,
    AddressError,
    NormalizedAddress,
    normalize_address,
    normalize_email,
    normalize_phone,
)
from engine.imports.consent import check_consent_events, import_consent_events
from engine.imports.contacts import check_contacts, import_contacts
from engine.imports.ledger import (
    ACTIONS,
    CHANNELS,
    PARTIES,
    contact_ids_for_address,
    record_event_rows,
    record_events,
)
from engine.imports.summary import ImportSummary

__all__ = [
    "ACTIONS",
    "CHANNELS",
    "KIND_FOR_CHANNEL",
    "PARTIES",
    "AddressError",
    "ImportSummary",
    "NormalizedAddress",
    "check_consent_events",
    "check_contacts",
    "contact_ids_for_address",
    "import_consent_events",
    "import_contacts",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
    "record_event_rows",
    "record_events",
]
