"""`consentry consent import` against SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.timeutil import to_us


def error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def contacts(workspace):
    path = workspace.contacts_file(
        "C1,Ann,,ann@example.com,(415) 555-0123,,,,,,",
        "C2,Bob,,,,,GB,,,,",
        name="contacts.csv",
    )
    assert workspace.import_contacts(path).code == 0
    return workspace


def test_events_are_appended_with_normalised_addresses(contacts):
    path = contacts.events_file(
        "C1,grant,email,marketing,,ANN@Example.COM,web_form,2025-01-01T10:00:00Z,web,consent,signed up",
        "C1,revoke,*,*,third,,written,2025-01-02T10:00:00-05:00,,,",
        "C1,block,sms,,,(415) 555-0123,sms_keyword,2025-01-03T10:00:00+00:00,carrier,,STOP",
        "C2,block,voice,,,020 7946 0958,verbal,2025-01-04T10:00:00Z,,,",  # read in C2's country
        "C2,unblock,*,,,+1 212 555 0199,verbal,2025-01-05T10:00:00Z,,,",  # `*`: a phone, no @
        "C2,grant,letter,service,first,\"1 Main St, Springfield\",written,2025-01-06T10:00:00Z,,,",
        "C1,Review,,,,,verbal,2025-01-07T10:00:00Z,,,",
    )
    result = contacts.import_events(path)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{path}: 7 rows read, 7 consent events recorded, 0 rejected"

    jan = lambda day, hour=10, tz=UTC: to_us(datetime(2025, 1, day, hour, tzinfo=tz))  # noqa: E731
    assert contacts.events("C1") == [
        ("grant", "email", "marketing", "first", "ANN@example.com", "web_form", jan(1)),
        ("revoke", "*", "*", "third", None, "written", jan(2, tz=timezone(timedelta(hours=-5)))),
        ("block", "sms", None, None, "+14155550123", "sms_keyword", jan(3)),
        ("review", None, None, None, None, "verbal", jan(7)),
    ]
    assert contacts.events("C2") == [
        ("block", "voice", None, None, "+442079460958", "verbal", jan(4)),
        ("unblock", "*", None, None, "+12125550199", "verbal", jan(5)),
        ("grant", "letter", "service", "first", "1 Main St, Springfield", "written", jan(6)),
    ]
    (row,) = contacts.query("SELECT actor, basis, note, recorded_at_us, cause FROM consent_events ORDER BY id LIMIT 1")
    assert row[:3] == ("web", "consent", "signed up") and row[3] > jan(7) and row[4] is None
    # A review stays in the ledger (gating reads it as of --at); the imported column is untouched.
    assert contacts.contact("C1")["reviewed_at_us"] is None


def test_opt_out_and_opt_in_move_the_projection_when_later(contacts):
    path = contacts.events_file(
        "C1,opt_out,,,,,verbal,2025-01-02T00:00:00Z,,,",
        "C1,opt_in,,,,,verbal,2025-01-01T00:00:00Z,,,",  # older: ledger only
        "C2,opt_out,,,,,verbal,2025-01-01T00:00:00Z,,,",
        "C2,opt_in,,,,,web_form,2025-01-03T00:00:00Z,,,",
    )
    assert contacts.import_events(path).code == 0
    c1, c2 = contacts.contact("C1"), contacts.contact("C2")
    assert c1["opted_out"] and c1["opted_out_changed_at_us"] == to_us(datetime(2025, 1, 2, tzinfo=UTC))
    assert not c2["opted_out"] and c2["opted_out_changed_at_us"] == to_us(datetime(2025, 1, 3, tzinfo=UTC))
    assert [e[0] for e in contacts.events("C1")] == ["opt_out", "opt_in"]


def test_every_bad_event_is_reported_and_nothing_is_written(contacts):
    contacts.import_events(contacts.events_file("C1,opt_out,,,,,verbal,2025-01-01T00:00:00Z,,,", name="ok.csv"))
    before = contacts.snapshot()
    path = contacts.events_file(
        "C1,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",  # valid, rolled back
        "C1,grant,email,loyalty,,,web_form,2025-01-01T00:00:00Z,,,",
        "C9,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,grant,email,marketing,,,web_form,2025-01-01T10:00:00,,,",
        "C1,grant,email,marketing,,,web_form,next tuesday,,,",
        "C1,subscribe,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,grant,fax,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,grant,email,marketing,fourth,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,grant,,,,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,opt_out,email,marketing,first,,verbal,2025-01-01T00:00:00Z,,,",
        "C1,block,email,marketing,,two@@example.com,,,,,",
        "C1,block,sms,,,no digits,verbal,2025-01-01T00:00:00Z,,,",
        ",,,,,,,,,,",
        ",revoke,email,*,,,verbal,2025-01-01T00:00:00Z,,,",
    )
    result = contacts.import_events(path)
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {path}:3: class: 'loyalty' is not a class of the tenant's policy (marketing, service, transactional, or *)",
        f"error: {path}:4: external_id: no contact 'C9' in this tenant (import the contact first)",
        f"error: {path}:5: occurred_at: '2025-01-01T10:00:00' has no UTC offset (add Z or +HH:MM)",
        f"error: {path}:6: occurred_at: 'next tuesday' is not an ISO 8601 date-time with an offset",
        f"error: {path}:7: action: 'subscribe' is not one of grant, revoke, block, unblock, opt_out, opt_in, review",
        f"error: {path}:8: channel: 'fax' is not one of email, sms, voice, letter, social, *",
        f"error: {path}:9: party: 'fourth' is not one of first, third, *",
        f"error: {path}:10: channel: is required for grant (one of email, sms, voice, letter, social, *)",
        f"error: {path}:10: class: is required for grant (a class of the tenant's policy, or *)",
        f"error: {path}:11: channel: must be empty for opt_out (it applies to the contact on every channel)",
        f"error: {path}:11: class: must be empty for opt_out (classes apply to grant and revoke)",
        f"error: {path}:11: party: must be empty for opt_out (parties apply to grant and revoke)",
        f"error: {path}:12: class: must be empty for block (classes apply to grant and revoke)",
        f"error: {path}:12: address: 'two@@example.com' is not an email address (expected local@domain with one @)",
        f"error: {path}:12: method: is required (e.g. web_form, verbal, written, sms_keyword, email_link, import)",
        f"error: {path}:12: occurred_at: is required (ISO 8601 with an offset, e.g. 2025-03-01T10:00:00-05:00)",
        f"error: {path}:13: address: 'no digits' is not a phone number (no digits of a phone number)",
        f"error: {path}:15: external_id: is required",
    ]
    assert contacts.snapshot() == before


def test_a_header_without_a_required_column_is_a_bad_file(contacts):
    path = contacts.events_file("C1,opt_out,verbal", header="external_id,action,method")
    result = contacts.import_events(path, "acme", "--skip-invalid")
    assert result.code == 2
    assert error_lines(result) == [f"error: {path}:1: occurred_at: required column is missing"]
    unknown = contacts.events_file("C1,opt_out,verbal,2025-01-01T00:00:00Z,x",
                                   header="external_id,action,method,occurred_at,source", name="u.csv")
    assert error_lines(contacts.import_events(unknown))[0].startswith(f"error: {unknown}:1: source: unknown column")


def test_skip_invalid_appends_the_valid_events_and_writes_rejects(contacts, tmp_path):
    path = contacts.events_file(
        "C1,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C9,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C2,opt_out,,,,,verbal,2025-01-01T00:00:00Z,,,",
    )
    rejects = tmp_path / "rejects.csv"
    result = contacts.import_events(path, "acme", "--skip-invalid", "--rejects", rejects)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{path}: 3 rows read, 2 consent events recorded, 1 rejected"
    assert [e[0] for e in contacts.events("C1")] == ["grant"]
    assert contacts.contact("C2")["opted_out"]
    with open(rejects, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert rows[0]["external_id"] == "C9" and rows[0]["occurred_at"] == "2025-01-01T00:00:00Z"
    assert rows[0]["error"] == f"{path}:3: external_id: no contact 'C9' in this tenant (import the contact first)"


def test_events_never_update_or_delete_the_ledger(contacts):
    first = contacts.events_file("C1,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,")
    contacts.import_events(first)
    before = contacts.query("SELECT * FROM consent_events ORDER BY id")
    contacts.import_events(first)  # the same file again: two more events, the first kept
    after = contacts.query("SELECT * FROM consent_events ORDER BY id")
    assert after[: len(before)] == before and len(after) == 2 * len(before)
