"""The domain pages in shared/seeds/, as stories a dealership would tell."""

from __future__ import annotations

from gating_cases import DAY, NOW, PHONE, Ledger, bulk, contact, gate, individual, outcome, tenant

from gating import (
    BatchEvaluator,
    ContactRow,
    LedgerRow,
    Message,
    Reason,
    TenantPolicy,
    compile_policy,
)


def test_opted_out_lead_still_gets_a_salespersons_individual_reply():
    # Seed 000: un-ticking "Opt in to future marketing" stops bulk eDMs and Live Leads,
    # "but will still be able to receive individual email or sms responses".
    ledger = Ledger()
    ledger.add("opt_out", when=NOW - 3 * DAY)
    for channel in ("email", "sms"):
        row = contact(channel=channel)
        assert gate(bulk(channel), row, ledger).reason is Reason.OPTED_OUT
        assert gate(individual(channel), row, ledger).decision == "send"


def test_ticking_opt_in_again_restores_bulk_marketing():
    ledger = Ledger()
    ledger.add("opt_out", when=NOW - 30 * DAY)
    ledger.add("opt_in", when=NOW - 3 * DAY)
    assert gate(bulk(), contact(), ledger).decision == "send"


def test_stop_stops_every_text_including_individual_ones():
    # An SMS STOP is a block on sms: "never one who told us to stop texting".
    ledger = Ledger()
    ledger.add("grant", "sms", "*", "*", when=NOW - 90 * DAY)
    ledger.add("block", "sms", address=PHONE, when=NOW - DAY)
    sms = contact(channel="sms")
    for message in (bulk("sms"), individual("sms"), bulk("sms", "transactional"), individual("sms", "transactional")):
        assert gate(message, sms, ledger).reason is Reason.DO_NOT_CONTACT
    assert gate(bulk("email"), contact(), ledger).decision == "send"  # email is another channel


def test_start_after_stop_lets_texts_through_again():
    ledger = Ledger()
    ledger.add("block", "sms", address=PHONE, when=NOW - 10 * DAY)
    ledger.add("unblock", "sms", address=PHONE, when=NOW - DAY)
    assert gate(individual("sms"), contact(channel="sms"), ledger).decision == "send"


def test_fullpath_leads_skip_the_opt_in_message():
    # Seed 001: opt-in messaging on, with Fullpath excluded because consent was obtained there.
    settings = {"sms": {"opt_in_required": True, "opt_in_excluded_sources": ["Fullpath"]}}
    fullpath = contact(channel="sms", lead_source="Fullpath")
    website = contact(channel="sms", lead_source="Website")
    assert gate(individual("sms"), fullpath, **settings).decision == "send"
    assert gate(individual("sms"), website, **settings).reason is Reason.AWAITING_SMS_OPT_IN
    # The opt-in request is the one text the website lead may get...
    assert gate(individual("sms", is_opt_in_request=True), website, **settings).decision == "send"
    # ...and once they reply YES (a grant on sms), everything else may follow.
    yes = Ledger()
    yes.add("grant", "sms", "marketing", "first", address=PHONE, when=NOW - DAY)
    assert gate(individual("sms"), website, yes, **settings).decision == "send"
    assert gate(bulk("sms", "service"), website, yes, **settings).decision == "send"


def test_consent_is_per_party_and_class():
    # Seed 003 (GDPR): marketing from "Us" and from third parties, per channel, service
    # follow-up apart from general marketing; everything unticked by default.
    gdpr = {"regime": "opt_in", "classes": {"service": {}, "marketing": {}}}
    ledger = Ledger()
    ledger.add("grant", "email", "service", "first")
    ledger.add("grant", "sms", "marketing", "third")
    email, sms = contact(), contact(channel="sms")
    assert gate(bulk("email", "service"), email, ledger, **gdpr).decision == "send"
    assert gate(bulk("email", "marketing"), email, ledger, **gdpr).reason is Reason.NO_CONSENT
    assert gate(bulk("email", "service", "third"), email, ledger, **gdpr).reason is Reason.NO_CONSENT
    assert gate(bulk("sms", "marketing", "third"), sms, ledger, **gdpr).decision == "send"
    assert gate(bulk("sms", "marketing", "first"), sms, ledger, **gdpr).reason is Reason.NO_CONSENT


def test_text_reauthorization_after_365_days():
    # Seed 002: "you may have to reauthorize a number for texting after a period of time".
    settings = {"regime": "opt_in", "reauthorization_days": {"sms": 365}}
    ledger = Ledger()
    ledger.add("grant", "sms", "marketing", "first", address=PHONE, when=NOW - 400 * DAY)
    sms = contact(channel="sms")
    assert gate(bulk("sms"), sms, ledger, **settings).reason is Reason.CONSENT_EXPIRED
    assert gate(individual("sms"), sms, ledger, **settings).decision == "send"
    ledger.add("grant", "sms", "marketing", "first", address=PHONE, when=NOW - DAY)  # "Text Reauth"
    assert gate(bulk("sms"), sms, ledger, **settings).decision == "send"


def test_preferences_reviewed_every_six_months():
    # Seed 003: review if never reviewed, or not within 6 months (183 days).
    settings = {"review": {"period_days": 183, "enforce": True}}
    assert gate(bulk(), contact(), **settings).reason is Reason.REVIEW_OVERDUE
    assert gate(bulk(), contact(reviewed_at_us=NOW - 190 * DAY), **settings).reason is Reason.REVIEW_OVERDUE
    ledger = Ledger()
    ledger.add("review", when=NOW - 20 * DAY)
    assert gate(bulk(), contact(reviewed_at_us=NOW - 190 * DAY), ledger, **settings).decision == "send"
    assert gate(bulk("email", "transactional"), contact(), **settings).decision == "send"


def test_prune_the_list_by_class_mode():
    # Seed 004: pruning removes those who opted out of the class, and for an opt-in class
    # also those who never opted in.
    policy = TenantPolicy.from_mapping(tenant(classes={"marketing": {"mode": "opt_out"}, "survey": {"mode": "opt_in"}}))
    audience = [ContactRow(i, f"C{i}", address=f"c{i}@example.com", address_valid=True) for i in range(1, 5)]
    ledger = [
        LedgerRow(2, 1, "revoke", "email", "marketing", "first", None, NOW - DAY),  # opted out of marketing
        LedgerRow(3, 2, "grant", "email", "survey", "first", None, NOW - DAY),  # opted in to surveys
        LedgerRow(4, 3, "revoke", "email", "survey", "first", None, NOW - DAY),
    ]

    def kept(class_code: str) -> list[int]:
        message = Message("bulk", "email", class_code)
        evaluator = BatchEvaluator(compile_policy(policy, message), message)
        decisions = evaluator.evaluate(audience, ledger, {}, NOW)
        return [row.contact_id for row, decision in zip(audience, decisions, strict=True) if decision.decision == "send"]

    assert kept("marketing") == [1, 3, 4]
    assert kept("survey") == [3]


def test_prune_reports_reason_per_contact():
    policy = TenantPolicy.from_mapping(tenant())
    message = Message("bulk", "email", "newsletter")
    audience = [ContactRow(1, address="a@x.io", address_valid=True), ContactRow(2, address=None),
                ContactRow(3, address="c@x.io", address_valid=True)]
    ledger = [LedgerRow(3, 1, "grant", "email", "newsletter", "first", None, NOW - DAY)]
    decisions = BatchEvaluator(compile_policy(policy, message), message).evaluate(audience, ledger, None, NOW)
    assert [outcome(d) for d in decisions] == [("suppress", "no_consent"), ("suppress", "no_address"), ("send", None)]
