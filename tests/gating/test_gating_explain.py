"""explain: every rule, its verdict, why it was skipped, and the events it used."""

from __future__ import annotations

import json

from gating_cases import DAY, NOW, PHONE, Ledger, at, bulk, contact, individual, tenant

from gating import RULES, Reason, TenantPolicy, compile_policy, explain


def run(message, row, ledger=(), *, now=NOW, recent=0, seen=(), **overrides):
    compiled = compile_policy(TenantPolicy.from_mapping(tenant(**overrides)), message)
    rows = ledger.rows if isinstance(ledger, Ledger) else list(ledger)
    return explain(row, rows, message, compiled, now, recent, seen)


def verdicts(explanation) -> dict[str, str]:
    return {rule.code: rule.verdict for rule in explanation.rules}


def test_every_rule_is_listed_in_order():
    explanation = run(bulk(), contact())
    assert [rule.number for rule in explanation.rules] == list(range(1, 13))
    assert [rule.code for rule in explanation.rules] == [rule.reason for rule in RULES]
    assert explanation.decision.decision == "send"


def test_individual_message_skips_the_bulk_rules_and_says_why():
    ledger = Ledger()
    ledger.add("opt_out")
    explanation = run(individual(), contact(), ledger)
    assert explanation.decision.decision == "send"
    for rule in explanation.rules[4:11]:
        assert (rule.verdict, rule.detail) == ("skip", "individual message")
    # Quiet hours: a person answering a person is never held to the recipient's night.
    assert (explanation.rules[11].verdict, explanation.rules[11].detail) == (
        "skip", "individual reply: a person answering a person"
    )


def test_exempt_class_skips_consent_rules():
    explanation = run(bulk(class_code="transactional"), contact(), review={"enforce": True})
    for rule in explanation.rules[5:11]:
        assert rule.verdict == "skip" and rule.detail == "class 'transactional' is exempt"
    assert explanation.rules[4].detail == "not in a campaign"


def test_cites_the_deciding_events():
    ledger = Ledger()
    ledger.add("grant", "email", "*", "*", when=NOW - 40 * DAY)
    revoke = ledger.add("revoke", "email", "marketing", "first", when=NOW - 2 * DAY)
    opt_in = ledger.add("opt_in", when=NOW - DAY)
    explanation = run(bulk(), contact(), ledger)
    by_code = {rule.code: rule for rule in explanation.rules}
    assert explanation.decision.reason is Reason.CONSENT_REVOKED
    assert by_code[Reason.CONSENT_REVOKED].event_ids == (revoke,)
    assert by_code[Reason.OPTED_OUT].verdict == "pass" and by_code[Reason.OPTED_OUT].event_ids == (opt_in,)


def test_later_failures_are_listed_too():
    ledger = Ledger()
    ledger.add("block", "email")
    ledger.add("opt_out")
    explanation = run(bulk(), contact(), ledger)
    assert explanation.reason is Reason.DO_NOT_CONTACT
    assert [r.code for r in explanation.rules if r.verdict == "fail"] == [Reason.DO_NOT_CONTACT, Reason.OPTED_OUT]


def test_seen_addresses_make_rule_5_fail():
    explanation = run(bulk(), contact(), seen={"pat@example.com"})
    assert explanation.reason is Reason.DUPLICATE_ADDRESS
    assert verdicts(run(bulk(), contact(), seen={"other@example.com"}))[Reason.DUPLICATE_ADDRESS] == "pass"


def test_quiet_hours_defer_and_json():
    ledger = Ledger()
    grant = ledger.add("grant", "sms", "*", "*", address=PHONE, when=NOW - 10 * DAY)
    explanation = run(bulk("sms", "newsletter"), contact(channel="sms", timezone="America/New_York"), ledger,
                      now=at("2024-06-16T03:00:00Z"), quiet_hours={"start": "21:00", "end": "08:00"},
                      reauthorization_days={"sms": 365}, frequency_caps=[{"channel": "sms", "max": 3, "per_hours": 24}],
                      recent=1)
    body = json.loads(json.dumps(explanation.to_dict()))
    assert body["decision"] == {"decision": "defer", "reason": "quiet_hours", "until_us": at("2024-06-16T12:00:00Z"),
                                "defer_until": "2024-06-16T12:00:00Z"}
    rules = {rule["code"]: rule for rule in body["rules"]}
    assert rules["quiet_hours"]["verdict"] == "fail" and "23:00 America/New_York" in rules["quiet_hours"]["detail"]
    assert rules["consent_expired"]["verdict"] == "pass" and rules["consent_expired"]["event_ids"] == [grant]
    assert rules["frequency_capped"]["detail"] == "1 bulk sms message(s) in the last 24 h, cap 3"
    assert set(body["rules"][0]) == {"number", "code", "verdict", "detail", "event_ids"}


def test_review_details():
    assert run(bulk(), contact(), review={"enforce": True}).rules[9].detail == "preferences never reviewed"
    detail = run(bulk(), contact(reviewed_at_us=NOW - 10 * DAY), review={"enforce": True}).rules[9].detail
    assert "contact record" in detail and "next review due" in detail


def test_other_contacts_events_are_ignored():
    ledger = Ledger(contact_id=2)
    ledger.add("block", "email")
    assert run(bulk(), contact(1), ledger).decision.decision == "send"
