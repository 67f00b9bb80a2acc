"""The contact page's buttons as data: which forms there are, which ledger event each
button records, and the methods a person picks from (seed 002's "Method" drop-down).

Kept apart from the handlers so the template, the POST handler and the tests read one
table: a form's `actions` are the only events it may record.
"""

from __future__ import annotations

from dataclasses import dataclass

from gating.compiled import US_PER_DAY
from gating.preferences import is_review_overdue
from gating.state import ALWAYS

__all__ = ["FORMS", "METHODS", "DeskForm", "ReviewState", "review_state"]

# How the customer told us, as the ledger's `method` (FORMATS.md, "Consent events" names
# web_form, verbal, written, sms_keyword, email_link; the rest are what a desk hears).
METHODS = (
    ("verbal", "Verbal (in person)"),
    ("phone_call", "On a phone call"),
    ("written", "Written (signed form, letter)"),
    ("email", "By email"),
    ("sms", "By text message"),
    ("web_form", "Web form"),
)


@dataclass(frozen=True, slots=True)
class DeskForm:
    """One button group: `actions` the ledger actions its buttons record; `fields` the
    event fields it asks for besides method and note."""

    name: str
    title: str
    actions: tuple[str, ...]
    fields: tuple[str, ...] = ()


FORMS = {
    form.name: form
    for form in (
        DeskForm("marketing", "Future marketing (contact-wide)", ("opt_in", "opt_out")),
        DeskForm("consent", "Consent for a channel, class and party", ("grant", "revoke"), ("channel", "class", "party")),
        DeskForm("block", "Do not contact (an address)", ("block", "unblock"), ("channel", "address")),
        DeskForm("reauth", "Reauthorize texting", ("grant",), ("class",)),
        DeskForm("review", "Preferences reviewed with the customer", ("review",)),
    )
}


@dataclass(frozen=True, slots=True)
class ReviewState:
    """Whether the page must ask for the review first (seed 003): `never` when the
    preferences were never reviewed; `due_us` when the review fell (or falls) due, one
    review period after `reviewed_us`, the last review (the contact record's date or a
    `review` event, whichever is later)."""

    overdue: bool
    never: bool
    due_us: int | None
    reviewed_us: int | None


def review_state(due_us: int | None, now_us: int, period_days: int) -> ReviewState:
    never = due_us == ALWAYS
    known = None if never or due_us is None else due_us
    reviewed = None if known is None else known - period_days * US_PER_DAY
    return ReviewState(is_review_overdue(due_us, now_us), never, known, reviewed)
