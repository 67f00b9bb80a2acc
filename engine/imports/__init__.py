"""Imports of contacts and consent events, and what the rest of the engine shares with them.

- `normalize_email`, `normalize_phone`, `normalize_address`: the one stored spelling of an
  address (webhooks and bounces must match contact points and ledger events);
- `record_events`: the one way into the consent ledger (keeps the contacts' projections);
- `import_contacts`, `import_consent_events`: the streaming, atomic CSV imports behind
  `consentry contacts import` and `consentry consent import` (docs/imports.md).

Names are loaded on first use: the worker processes that check rows import only the row
checks, not SQLAlchemy (a second of start-up per worker).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

_HOMES = {
    "ACTIONS": "vocabulary",
    "CHANNELS": "vocabulary",
    "PARTIES": "vocabulary",
    "KIND_FOR_CHANNEL": "addresses",
    "AddressError": "addresses",
    "NormalizedAddress": "addresses",
    "normalize_address": "addresses",
    "normalize_email": "addresses",
    "normalize_phone": "addresses",
    "ImportSummary": "summary",
    "check_consent_events": "consent",
    "import_consent_events": "consent",
    "check_contacts": "contacts",
    "import_contacts": "contacts",
    "contact_ids_for_address": "ledger",
    "record_event_rows": "ledger",
    "record_events": "ledger",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
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
    from engine.imports.ledger import contact_ids_for_address, record_event_rows, record_events
    from engine.imports.summary import ImportSummary
    from engine.imports.vocabulary import ACTIONS, CHANNELS, PARTIES
