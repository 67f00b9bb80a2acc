"""`consentry campaign check` end to end: CSV imports → expansion → gating → report and CSV."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest

from tests.cli import consentry, ok
from tests.engine.scenario import AT, AT_INSTANT, BEFORE_REVOCATIONS, REVOKED, build, iso, local

EXPECTED_EMAIL = {
    "E1": ("send", ""),
    "E2": ("suppress", "no_address"),
    "E3": ("suppress", "invalid_address"),
    "E4": ("suppress", "do_not_contact"),
    "E5": ("send", ""),
    "E6": ("suppress", "duplicate_address"),
    "E7": ("suppress", "opted_out"),
    "E8": ("suppress", "consent_revoked"),
    "E9": ("suppress", "review_overdue"),
}
EXPECTED_SMS = {
    "S1": ("send", ""),
    "S2": ("suppress", "awaiting_sms_opt_in"),
    "S3": ("suppress", "no_consent"),  # Fullpath (any case) skips the opt-in wait
    "S4": ("suppress", "consent_expired"),
    "S5": ("defer", "quiet_hours"),  # 03:00 in Tokyo
    "S6": ("suppress", "invalid_address"),
    "S7": ("suppress", "do_not_contact"),
}


def decisions(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows


@pytest.fixture
def dealership(tmp_path, db_url):
    return build(tmp_path, db_url), db_url


def test_every_reason_code_is_reached_from_csv_imports(dealership, tmp_path):
    files, db = dealership
    out = tmp_path / "email.csv"
    result = ok("campaign", "check", files["email"], "--at", AT, "--out", out, "--db", db)
    rows = decisions(out)
    assert list(rows[0]) == ["external_id", "channel", "address", "decision", "reason", "defer_until"]
    assert {r["external_id"]: (r["decision"], r["reason"]) for r in rows} == EXPECTED_EMAIL
    assert "duplicate_address" in result.out and "total" in result.out

    out = tmp_path / "sms.csv"
    ok("campaign", "check", files["sms"], "--at", AT, "--out", out, "--db", db)
    rows = decisions(out)
    assert {r["external_id"]: (r["decision"], r["reason"]) for r in rows} == EXPECTED_SMS
    deferred = next(r for r in rows if r["external_id"] == "S5")
    # Quiet hours end at 08:00 Tokyo = 23:00 UTC, five hours after AT (18:00 UTC).
    assert deferred["defer_until"] == iso(AT_INSTANT + timedelta(hours=5))
    assert next(r for r in rows if r["external_id"] == "S1")["address"] == "+12135550201"


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_results_do_not_depend_on_batch_size(dealership, tmp_path, batch_size):
    files, db = dealership
    out = tmp_path / f"email-{batch_size}.csv"
    ok("campaign", "check", files["email"], "--at", AT, "--out", out, "--batch-size", batch_size, "--db", db)
    assert {r["external_id"]: (r["decision"], r["reason"]) for r in decisions(out)} == EXPECTED_EMAIL


def test_check_records_nothing_and_can_repeat(dealership, tmp_path):
    files, db = dealership
    first = ok("campaign", "check", files["email"], "--at", AT, "--json", "--db", db).out
    second = ok("campaign", "check", files["email"], "--at", AT, "--json", "--db", db).out
    strip = lambda text: [line for line in text.splitlines() if "elapsed" not in line]  # noqa: E731
    assert strip(first) == strip(second)
    status = consentry("campaign", "status", "spring-offer", "--tenant", "acme-motors", "--db", db)
    assert status.code == 2 and "has not been launched" in status.err


def test_at_sees_the_ledger_as_of_that_instant(dealership, tmp_path):
    files, db = dealership
    out = tmp_path / "before.csv"
    # A month before E4's block and E8's revoke (~6 months before AT), both were reachable.
    ok("campaign", "check", files["email"], "--at", iso(AT_INSTANT - BEFORE_REVOCATIONS), "--out", out, "--db", db)
    got = {r["external_id"]: (r["decision"], r["reason"]) for r in decisions(out)}
    assert got["E4"] == ("send", "") and got["E8"] == ("send", "")


def test_audience_filters(dealership, tmp_path):
    files, db = dealership
    text = files["email"].read_text().replace("audience: {external_id: [E1, E2, E3, E4, E5, E6, E7, E8, E9]}", "audience: {lead_source: [FULLPATH]}")
    files["email"].write_text(text)
    out = tmp_path / "fullpath.csv"
    ok("campaign", "check", files["email"], "--at", AT, "--out", out, "--db", db)
    assert [r["external_id"] for r in decisions(out)] == ["S3"]


def test_a_class_not_in_the_policy_is_bad_input(dealership):
    files, db = dealership
    files["email"].write_text(files["email"].read_text().replace("class: marketing", "class: newsletter"))
    result = consentry("campaign", "check", files["email"], "--db", db)
    assert result.code == 2
    assert f"{files['email']}:5: class: class 'newsletter' is not in tenant" in result.err


def test_an_unknown_tenant_is_bad_input(dealership):
    files, db = dealership
    files["email"].write_text(files["email"].read_text().replace("tenant: acme-motors", "tenant: nobody"))
    result = consentry("campaign", "check", files["email"], "--db", db)
    assert result.code == 2 and f"{files['email']}:2: tenant: tenant 'nobody' not found" in result.err


def test_tenants_never_see_each_other(tmp_path, db_url):
    build(tmp_path / "a", db_url, tenant="acme-motors")
    files_b = build(tmp_path / "b", db_url, tenant="bravo-autos")
    # Bravo's STOP for E1 must not touch Acme's E1.
    (tmp_path / "stop.csv").write_text(
        "external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note\n"
        f"E1,block,email,,,,email_link,{local(AT_INSTANT - REVOKED)},customer,,\n"
    )
    ok("consent", "import", tmp_path / "stop.csv", "--tenant", "bravo-autos", "--db", db_url)
    ok("campaign", "check", files_b["email"], "--at", AT, "--out", tmp_path / "b.csv", "--db", db_url)
    ok("campaign", "check", tmp_path / "a" / "email.yaml", "--at", AT, "--out", tmp_path / "a.csv", "--db", db_url)
    assert {r["external_id"]: r["reason"] for r in decisions(tmp_path / "b.csv")}["E1"] == "do_not_contact"
    assert {r["external_id"]: r["reason"] for r in decisions(tmp_path / "a.csv")}["E1"] == ""


def test_explain_lists_every_rule_and_the_evidence(dealership):
    files, db = dealership
    import json

    result = ok("explain", "--tenant", "acme-motors", "--contact", "S7", "--channel", "sms", "--class", "survey", "--at", AT, "--json", "--db", db)
    body = json.loads(result.out)
    assert len(body["rules"]) == 12
    failing = [rule for rule in body["rules"] if rule["verdict"] == "fail"]
    assert failing[0]["code"] == "do_not_contact"
    assert any(event["action"] == "block" and event["method"] == "sms_keyword" for event in failing[0]["events"])
    # An individual reply to an opted-out customer is allowed; one to a STOPped number is not.
    individual = json.loads(ok("explain", "--tenant", "acme-motors", "--contact", "E7", "--channel", "email", "--class", "marketing",
                               "--kind", "individual", "--at", AT, "--json", "--db", db).out)
    assert all(rule["verdict"] != "fail" for rule in individual["rules"])
    text = ok("explain", "--tenant", "acme-motors", "--contact", "S7", "--channel", "sms", "--class", "survey", "--at", AT, "--db", db).out
    assert "do_not_contact" in text and "SUPPRESS" in text


def test_a_review_counts_from_when_it_happened(dealership, tmp_path):
    """E9 was never reviewed; a review event 23 days before AT ends review_overdue from then on only."""
    files, db = dealership
    (tmp_path / "review.csv").write_text(
        "external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note\n"
        f"E9,review,,,,,verbal,{iso(AT_INSTANT - timedelta(days=23, hours=8))},sales,,preferences reviewed at the desk\n"
    )
    ok("consent", "import", tmp_path / "review.csv", "--tenant", "acme-motors", "--db", db)
    for at, expected in ((iso(AT_INSTANT - timedelta(days=54, hours=18)), "review_overdue"), (AT, "")):
        out = tmp_path / f"review-{at[:10]}.csv"
        ok("campaign", "check", files["email"], "--at", at, "--out", out, "--db", db)
        assert {r["external_id"]: r["reason"] for r in decisions(out)}["E9"] == expected


def test_cells_that_need_quoting_come_back_as_imported(dealership, tmp_path):
    # The CSV is written without the csv module when no cell needs quoting: an external id
    # or address with a comma or a quote must still read back exactly as imported.
    files, db = dealership
    extra = tmp_path / "quoted.csv"
    extra.write_text('external_id,email\n"Q,""1""","""a,b""@example.com"\n', encoding="utf-8")
    ok("contacts", "import", extra, "--tenant", "acme-motors", "--db", db)
    text = files["email"].read_text().replace(
        "audience: {external_id: [E1, E2, E3, E4, E5, E6, E7, E8, E9]}", """audience: {external_id: [E1, 'Q,"1"', E2]}"""
    )
    files["email"].write_text(text)
    out = tmp_path / "quoted-out.csv"
    ok("campaign", "check", files["email"], "--at", AT, "--out", out, "--db", db)
    rows = decisions(out)  # in the order the contacts were created
    assert [(r["external_id"], r["address"]) for r in rows][2] == ('Q,"1"', '"a,b"@example.com')
    assert [r["external_id"] for r in rows] == ["E1", "E2", 'Q,"1"']
    assert rows[1]["address"] == "" and rows[1]["reason"] == "no_address"
