"""When a person's preferences fall due for review (seed 003): gating.preferences.review_due,
read as rule 10 reads it, whether or not the tenant enforces the review."""

from __future__ import annotations

import pytest

from gating import TenantPolicy
from gating.preferences import is_review_overdue, review_due
from gating.state import ALWAYS
from tests.gating.gating_cases import DAY, NOW, Ledger, contact, tenant

PERIOD = 183 * DAY


def _policy(**overrides) -> TenantPolicy:
    return TenantPolicy.from_mapping(tenant(**overrides))


@pytest.mark.parametrize(("reviewed_at", "review_event", "due", "overdue"), [
    (None, None, ALWAYS, True),  # never reviewed: due since forever
    (NOW - 10 * DAY, None, NOW - 10 * DAY + PERIOD, False),  # the contact record decides
    (NOW - 200 * DAY, None, NOW - 200 * DAY + PERIOD, True),
    (None, NOW - 200 * DAY, NOW - 200 * DAY + PERIOD, True),  # a review event decides
    (NOW - 300 * DAY, NOW - 5 * DAY, NOW - 5 * DAY + PERIOD, False),  # the later of the two
    (NOW - 5 * DAY, NOW - 300 * DAY, NOW - 5 * DAY + PERIOD, False),
])
@pytest.mark.parametrize("enforce", [False, True])
def test_review_due_is_the_later_review_plus_the_period(reviewed_at, review_event, due, overdue, enforce) -> None:
    ledger = Ledger()
    ledger.add("grant", "email", "marketing", "first")
    if review_event is not None:
        ledger.add("review", when=review_event)
    policy = _policy(review={"enforce": enforce})
    found = review_due(policy, contact(reviewed_at_us=reviewed_at), ledger.rows, NOW)
    assert found == due
    assert is_review_overdue(found, NOW) is overdue


def test_the_period_is_the_policys_and_nothing_is_due_without_a_class_to_choose() -> None:
    ledger = Ledger()
    ledger.add("review", when=NOW - 40 * DAY)
    short = _policy(review={"period_days": 30})
    assert is_review_overdue(review_due(short, contact(), ledger.rows, NOW), NOW)
    exempt_only = _policy(classes={"transactional": {"mode": "exempt"}})
    assert review_due(exempt_only, contact(), ledger.rows, NOW) is None
    assert not is_review_overdue(None, NOW)
