"""Linked contacts (seed 004): `consentry contacts link`, and consent changes copied onto
linked contacts through the consent and contacts imports, against SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

LINKS_HEADER = "external_id,linked_external_id,kind"
AT = "2025-06-01T12:00:00Z"


def error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def household(workspace):
    """Acme: H1 and H2 share a phone, H3 is H2's billing account, H4 stands alone.
    Globex has contacts with the same external ids, never linked."""
    people = workspace.contacts_file(
        "H1,Ava,,ava@example.com,(415) 555-0100,,,,,,",
        "H2,Ben,,ben@example.com,(415) 555-0100,,,,,,",
        "H3,Ben Billing,,billing@example.com,,,,,,,",
        "H4,Cy,,cy@example.com,,,,,,,",
    )
    assert workspace.import_contacts(people).code == 0
    assert workspace.import_contacts(people, "globex").code == 0
    links = workspace.file("links.csv", "\n".join([LINKS_HEADER, "H1,H2,household", "H2,H3,Billing"]) + "\n")
    result = workspace.run("contacts", "link", links, "--tenant", "acme", "--actor", "crm-sync")
    assert result.code == 0, result.err
    assert result.out.strip() == f"{links}: 2 rows read, 2 links created, 0 changed, 0 unchanged"
    return workspace


def copied(workspace, external_id: str, tenant: str = "acme") -> list[tuple]:
    """(action, channel, class, party, address, linked_from) of a contact's ledger, in order."""
    return workspace.query(
        "SELECT e.action, e.channel, e.class_code, e.party, e.address, e.linked_from FROM consent_events e"
        " JOIN contacts c ON c.id = e.contact_id JOIN tenants t ON t.id = e.tenant_id"
        " WHERE t.code = :tenant AND c.external_id = :external_id ORDER BY e.id",
        tenant=tenant, external_id=external_id,
    )


def test_linking_is_idempotent_and_either_way_round(household):
    again = household.file("again.csv", f"{LINKS_HEADER}\nH2,H1,household\nH3,H2,service_location\n")
    result = household.ok("contacts", "link", again, "--tenant", "acme")
    assert result.out.strip() == f"{again}: 2 rows read, 0 links created, 1 changed, 1 unchanged"
    rows = household.query("SELECT kind, actor FROM contact_links ORDER BY id")
    assert rows == [("household", "crm-sync"), ("service_location", "crm-sync")]
    assert household.query("SELECT count(*) FROM contact_links l JOIN tenants t ON t.id = l.tenant_id"
                           " WHERE t.code = 'globex'") == [(0,)]


def test_bad_link_rows_are_located_and_nothing_is_written(household):
    bad = household.file("bad.csv", "\n".join([
        LINKS_HEADER,
        "H1,H4,household",
        "H1,NOPE,household",
        "H4,H4,other",
        "H1,H3,cousin",
        ",H3,",
    ]) + "\n")
    result = household.run("contacts", "link", bad, "--tenant", "acme")
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {bad}:3: linked_external_id: no contact 'NOPE' in this tenant (import the contact first)",
        f"error: {bad}:4: linked_external_id: a contact cannot be linked to itself",
        f"error: {bad}:5: kind: 'cousin' is not one of household, billing, service_location, other",
        f"error: {bad}:6: external_id: is required",
        f"error: {bad}:6: kind: is required (one of household, billing, service_location, other)",
    ]
    assert household.query("SELECT count(*) FROM contact_links") == [(2,)]
    missing = household.file("missing.csv", "external_id,kind\nH1,household\n")
    result = household.run("contacts", "link", missing, "--tenant", "acme")
    assert result.code == 2 and "linked_external_id" in result.err


def test_a_contact_level_change_is_copied_to_direct_links_only_once(household):
    events = household.events_file(
        "H1,opt_out,,,,,verbal,2025-01-01T10:00:00Z,desk,,asked at the service desk",
        "H3,grant,*,service,first,,written,2025-01-02T10:00:00Z,,contract,",
    )
    result = household.import_events(events)
    # The summary counts the file's events; the copies are in the ledger beside them.
    assert result.code == 0 and "2 consent events recorded" in result.out, result.err
    assert copied(household, "H1") == [("opt_out", None, None, None, None, None)]
    # H2 is linked to both: a copy of each, saying where it came from.
    assert copied(household, "H2") == [
        ("opt_out", None, None, None, None, "H1"),
        ("grant", "*", "service", "first", None, "H3"),
    ]
    # H3 is linked to H2 only: H1's change is not copied on from H2's copy.
    assert copied(household, "H3") == [("grant", "*", "service", "first", None, None)]
    assert copied(household, "H4") == []
    assert copied(household, "H2", "globex") == []
    # The copy moves the projection as the original does, and keeps who/how/when.
    assert bool(household.contact("H2")["opted_out"]) is True
    (row,) = household.query(
        "SELECT method, actor, note, occurred_at_us FROM consent_events WHERE linked_from = 'H1'")
    (original,) = household.query(
        "SELECT method, actor, note, occurred_at_us FROM consent_events WHERE action = 'opt_out' AND linked_from IS NULL")
    assert row == original == ("verbal", "desk", "asked at the service desk", row[3])

    explained = json.loads(household.ok(
        "explain", "--tenant", "acme", "--contact", "H2", "--channel", "email", "--class", "marketing",
        "--at", AT, "--json").out)
    assert explained["decision"]["reason"] == "opted_out"
    free = json.loads(household.ok(
        "explain", "--tenant", "acme", "--contact", "H4", "--channel", "email", "--class", "marketing",
        "--at", AT, "--json").out)
    assert free["decision"]["decision"] == "send"


def test_an_address_change_is_copied_only_where_the_linked_contact_has_that_address(household):
    events = household.events_file(
        "H1,revoke,email,marketing,first,ava@example.com,email_link,2025-01-01T10:00:00Z,,,",
        "H1,block,sms,,,(415) 555-0100,sms_keyword,2025-01-02T10:00:00Z,,,STOP",
    )
    assert household.import_events(events).code == 0
    # Ava's unsubscribe is hers: Ben's own address keeps its consent...
    assert copied(household, "H2") == [("block", "sms", None, None, "+14155550100", "H1")]
    revoked = json.loads(household.ok(
        "explain", "--tenant", "acme", "--contact", "H2", "--channel", "email", "--class", "marketing",
        "--at", AT, "--json").out)
    assert revoked["decision"]["decision"] == "send"
    # ...but the phone they share is blocked for both.
    texted = json.loads(household.ok(
        "explain", "--tenant", "acme", "--contact", "H2", "--channel", "sms", "--class", "marketing",
        "--at", AT, "--json").out)
    assert texted["decision"]["reason"] == "do_not_contact"


def test_an_event_the_batch_records_on_both_is_not_copied_twice(household):
    events = household.events_file(
        "H1,block,sms,,,(415) 555-0100,sms_keyword,2025-01-02T10:00:00Z,,,STOP",
        "H2,block,sms,,,(415) 555-0100,sms_keyword,2025-01-02T10:00:00Z,,,STOP",
    )
    assert household.import_events(events).code == 0
    assert copied(household, "H1") == [("block", "sms", None, None, "+14155550100", None)]
    assert copied(household, "H2") == [("block", "sms", None, None, "+14155550100", None)]


def test_a_contacts_import_opt_out_is_copied(household):
    again = household.contacts_file("H3,,,,,,,,,true,", name="again.csv")
    assert household.import_contacts(again).code == 0
    assert [row[0] for row in copied(household, "H2")] == ["opt_out"]
    assert copied(household, "H2")[0][-1] == "H3"
    assert copied(household, "H1") == []
