"""Reading reports (engine/inbound/reports.py): plain values in, plain values out."""

from __future__ import annotations

from engine.inbound.reports import (
    complaint_of,
    dsn_recipients,
    embedded_return_path,
    parse,
    unsubscribe_token,
)
from tests.inbound.mail import arf_report, person_mail, postfix_dsn

HEADERS = "From: offers@acme-motors.example\r\nTo: ben@example.com\r\nSubject: Offer"
TOKEN = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ"


def test_a_5xx_failure_is_a_hard_bounce_with_its_status_and_diagnostic():
    [recipient] = dsn_recipients(parse(postfix_dsn("bounces+x@acme-motors.example", "ben@example.com", HEADERS)))
    assert (recipient.address, recipient.permanent, recipient.action, recipient.status) == ("ben@example.com", True, "failed", "5.1.1")
    assert recipient.describe() == "bounced 5.1.1: 550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table"


def test_giving_up_on_a_4xx_and_a_delay_are_soft():
    gave_up = postfix_dsn("b@a.example", "ben@example.com", HEADERS, status="4.4.1", diagnostic="connect to mx: timed out")
    delayed = postfix_dsn("b@a.example", "ben@example.com", HEADERS, action="delayed", status="4.4.1", diagnostic="timed out")
    assert [(r.permanent, r.action) for r in dsn_recipients(parse(gave_up))] == [(False, "failed")]
    assert [(r.permanent, r.action) for r in dsn_recipients(parse(delayed))] == [(False, "delayed")]


def test_a_success_notice_or_a_person_is_no_bounce():
    delivered = postfix_dsn("b@a.example", "ben@example.com", HEADERS, action="delivered", status="2.0.0", diagnostic="250 ok")
    assert dsn_recipients(parse(delivered)) == []
    assert dsn_recipients(parse(person_mail("ben@example.com", "b@a.example", "Out of office"))) == []


def test_an_arf_report_and_the_return_path_of_its_original():
    original = "Return-Path: <bounces+abc234@acme-motors.example>\r\n" + HEADERS + "\r\n\r\nbody"
    message = parse(arf_report("fbl@acme-motors.example", "ben@example.com", original))
    complaint = complaint_of(message)
    assert complaint is not None and (complaint.feedback_type, complaint.original_recipient) == ("abuse", "ben@example.com")
    assert embedded_return_path(message) == "bounces+abc234@acme-motors.example"
    assert complaint_of(parse(postfix_dsn("b@a.example", "ben@example.com", HEADERS))) is None


def test_the_unsubscribe_token_survives_a_reply_prefix_and_encoding():
    assert unsubscribe_token(parse(person_mail("a@b.example", "u@a.example", f"Re: unsubscribe-{TOKEN}"))) == TOKEN
    assert unsubscribe_token(parse(person_mail("a@b.example", "u@a.example", f"=?utf-8?q?unsubscribe-{TOKEN}?="))) == TOKEN
    assert unsubscribe_token(parse(person_mail("a@b.example", "u@a.example", "stop it"))) is None
