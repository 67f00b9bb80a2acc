"""`consentry consent migrate-legacy` (seed 003) against SQLite and PostgreSQL: both
assumptions, the reversal, idempotency, choices recorded otherwise left alone, the review
it makes due, and located errors."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime

import pytest

from engine.cli import main
from engine.timeutil import to_us
from tests.cli import Result

FIRST = to_us(datetime(2025, 3, 1, 9, tzinfo=UTC))
LATER = to_us(datetime(2025, 4, 1, 9, tzinfo=UTC))
AT = "2025-05-01T12:00:00Z"

# Acme made GDPR-style: marketing needs a grant, and bulk marketing waits for a review.
STRICT = """\
tenant: acme
name: acme
country: US
timezone: America/Los_Angeles
regime: opt_in
review: {period_days: 183, enforce: true}
classes:
  marketing: {mode: opt_in}
  service: {mode: opt_in}
  transactional: {mode: exempt}
"""

FLAGS = "external_id,no_marketing,no_follow_up\nL1,,\nL2,yes,\nL3,false,TRUE\nL4,0,no\n"


def migrate(workspace, path, assume: str, at_us: int, tenant: str = "acme") -> Result:
    """The real command, with the clock at `at_us`."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["consent", "migrate-legacy", str(path), "--tenant", tenant, "--assume", assume,
                  "--actor", "upgrade-2.1", "--db", workspace.url], clock=lambda: at_us)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def legacy(workspace):
    workspace.ok("tenant", "apply", workspace.file("strict.yaml", STRICT))
    people = workspace.contacts_file(
        "L1,Ann,,l1@example.com,,,,,,,2024-12-01",
        "L2,Bob,,l2@example.com,,,,,,,2024-12-01",
        "L3,Cat,,l3@example.com,,,,,,,",
        "L4,Dan,,l4@example.com,,,,,,,2024-12-01",
    )
    assert workspace.import_contacts(people).code == 0
    assert workspace.import_contacts(people, "globex").code == 0
    # L4 unsubscribed from marketing email through a link since: a recorded choice.
    choice = workspace.events_file("L4,revoke,email,marketing,first,,email_link,2025-02-01T10:00:00Z,,,")
    assert workspace.import_events(choice).code == 0
    workspace.flags = workspace.file("flags.csv", FLAGS)
    return workspace


def ledger(workspace, external_id: str, tenant: str = "acme") -> list[tuple]:
    """(action, channel, class, party, basis, method, occurred_at_us) in ledger order."""
    return workspace.query(
        "SELECT e.action, e.channel, e.class_code, e.party, e.basis, e.method, e.occurred_at_us FROM consent_events e"
        " JOIN contacts c ON c.id = e.contact_id JOIN tenants t ON t.id = e.tenant_id"
        " WHERE t.code = :tenant AND c.external_id = :external_id ORDER BY e.id",
        tenant=tenant, external_id=external_id,
    )


def explain(workspace, external_id: str, class_code: str = "marketing") -> dict:
    return json.loads(workspace.ok(
        "explain", "--tenant", "acme", "--contact", external_id, "--channel", "email", "--class", class_code,
        "--at", AT, "--json").out)["decision"]


def test_legitimate_interest_grants_the_unflagged_and_revokes_the_flags(legacy):
    result = migrate(legacy, legacy.flags, "legitimate_interest", FIRST)
    assert result.code == 0, result.err
    assert result.out.strip() == (f"{legacy.flags}: 4 rows read, 4 grants and 3 revokes recorded, "
                                  "1 classes left to choices already recorded, 4 contacts need a review")
    li, m = "legitimate_interest", "legacy_migration"
    assert ledger(legacy, "L1") == [("grant", "*", "marketing", "first", li, m, FIRST),
                                    ("grant", "*", "service", "first", li, m, FIRST)]
    assert ledger(legacy, "L2") == [("revoke", "*", "marketing", "*", None, m, FIRST),
                                    ("revoke", "*", "service", "*", None, m, FIRST)]
    assert ledger(legacy, "L3") == [("grant", "*", "marketing", "first", li, m, FIRST),
                                    ("revoke", "*", "service", "*", None, m, FIRST)]
    # L4's own unsubscribe from marketing stands; service had no choice recorded.
    assert ledger(legacy, "L4")[1:] == [("grant", "*", "service", "first", li, m, FIRST)]
    assert ledger(legacy, "L1", "globex") == []
    (actor,) = legacy.query("SELECT DISTINCT actor FROM consent_events WHERE method = 'legacy_migration'")
    assert actor == ("upgrade-2.1",)

    # Every changed contact needs a review: the carried-over date reviewed the old flags.
    assert [legacy.contact(c)["reviewed_at_us"] for c in ("L1", "L2", "L3", "L4")] == [None] * 4
    assert legacy.contact("L1", "globex")["reviewed_at_us"] is not None
    assert explain(legacy, "L1") == {**explain(legacy, "L1"), "decision": "suppress", "reason": "review_overdue"}
    assert explain(legacy, "L2")["reason"] == "no_consent"
    # Once reviewed with the customer, the assumed grant lets marketing through.
    review = legacy.events_file("L1,review,,,,,verbal,2025-04-20T10:00:00Z,desk,,", name="review.csv")
    assert legacy.import_events(review).code == 0
    assert explain(legacy, "L1")["decision"] == "send"


def test_the_same_file_twice_records_nothing_the_second_time(legacy):
    migrate(legacy, legacy.flags, "legitimate_interest", FIRST)
    before = legacy.snapshot()
    again = migrate(legacy, legacy.flags, "legitimate_interest", LATER)
    assert again.code == 0, again.err
    assert "0 grants and 0 revokes recorded" in again.out and "0 contacts need a review" in again.out
    assert legacy.snapshot() == before


def test_no_permission_reverses_an_earlier_legitimate_interest_run(legacy):
    migrate(legacy, legacy.flags, "legitimate_interest", FIRST)
    review = legacy.events_file("L1,review,,,,,verbal,2025-03-10T10:00:00Z,desk,,", name="review.csv")
    assert legacy.import_events(review).code == 0
    result = migrate(legacy, legacy.flags, "no_permission", LATER)
    assert result.code == 0, result.err
    assert "0 grants and 4 revokes recorded" in result.out and "3 contacts need a review" in result.out
    m = "legacy_migration"
    assert ledger(legacy, "L1")[-2:] == [("revoke", "*", "marketing", "first", None, m, LATER),
                                         ("revoke", "*", "service", "first", None, m, LATER)]
    assert ledger(legacy, "L3")[-1] == ("revoke", "*", "marketing", "first", None, m, LATER)
    assert len(ledger(legacy, "L2")) == 2  # already revoked: nothing new
    assert explain(legacy, "L1")["reason"] == "no_consent"
    # And back again: the assumption can be restored by a later run.
    restored = migrate(legacy, legacy.flags, "legitimate_interest", LATER + 1)
    assert "4 grants and 0 revokes recorded" in restored.out


def test_no_permission_from_scratch_grants_nothing_and_is_idempotent(legacy):
    first = migrate(legacy, legacy.flags, "no_permission", FIRST)
    assert first.code == 0, first.err
    assert "0 grants and 3 revokes recorded" in first.out and "2 contacts need a review" in first.out
    assert ledger(legacy, "L1") == []
    assert legacy.contact("L1")["reviewed_at_us"] is not None  # nothing changed for L1
    before = legacy.snapshot()
    assert "0 grants and 0 revokes recorded" in migrate(legacy, legacy.flags, "no_permission", LATER).out
    assert legacy.snapshot() == before


def test_bad_rows_are_located_and_nothing_is_written(legacy):
    before = legacy.snapshot()
    bad = legacy.file("bad.csv", "external_id,no_marketing,no_follow_up\nL1,maybe,\nNOPE,,\nL2,,\nL2,,\n,yes,\n")
    result = migrate(legacy, bad, "legitimate_interest", FIRST)
    assert result.code == 2
    assert [line for line in result.err.splitlines() if line.startswith("error: ")] == [
        f"error: {bad}:2: no_marketing: 'maybe' is not one of true, false, yes, no, 1, 0",
        f"error: {bad}:3: external_id: no contact 'NOPE' in this tenant (import the contact first)",
        f"error: {bad}:5: external_id: 'L2' is already on line 4",
        f"error: {bad}:6: external_id: is required",
    ]
    assert legacy.snapshot() == before
    unknown = legacy.file("unknown.csv", "external_id,no_texts\nL1,yes\n")
    assert migrate(legacy, unknown, "legitimate_interest", FIRST).code == 2
