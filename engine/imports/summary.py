"""What an import did, as counted while it ran; printed as the one-line summary."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImportSummary"]


@dataclass(slots=True)
class ImportSummary:
    path: str
    kind: str  # "contacts" or "consent"
    rows_read: int = 0
    contacts_created: int = 0
    contacts_updated: int = 0
    events_recorded: int = 0
    rejected: int = 0

    @property
    def outcomes(self) -> dict[str, int]:
        """Rows by outcome, as `consentry_import_rows_total{kind, outcome}` counts them."""
        written = (
            {"created": self.contacts_created, "updated": self.contacts_updated}
            if self.kind == "contacts" else {"recorded": self.events_recorded}
        )
        return {**written, "rejected": self.rejected}

    def __str__(self) -> str:
        parts = [f"{self.rows_read} rows read"]
        if self.kind == "contacts":
            parts += [f"{self.contacts_created} contacts created", f"{self.contacts_updated} updated"]
        parts += [f"{self.events_recorded} consent events recorded", f"{self.rejected} rejected"]
        return f"{self.path}: " + ", ".join(parts)
