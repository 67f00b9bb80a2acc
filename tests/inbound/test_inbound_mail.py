"""Mail that comes back, end to end: a campaign goes out through the capture SMTP server,
then a real SMTP client delivers an unsubscribe mail, Postfix DSNs and an ARF report to the
listener, and `campaign check` / `campaign export` show what they recorded."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import json
import smtplib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.cli import consentry, ok
from tests.inbound.files import build
from tests.inbound.mail import arf_report, person_mail, postfix_dsn

DOMAIN = "acme-motors.example"


def sql(db: str, query: str) -> list:
    """Read (or change) the database directly, as an operator's SQL client would."""
    async def _run() -> list:
        engine = create_async_engine(db)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(query))
                return result.all() if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def deliver(port: int, mail_from: str, to: str, data: bytes) -> tuple[int, bytes]:
    """One SMTP transaction; returns the reply to the end of DATA (or to RCPT if refused)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("relay.example")
        client.mail(mail_from)
        code, reply = client.rcpt(to)
        if code >= 400:
            return code, reply
        return client.data(data)


def sent_mails(capture) -> dict[str, dict]:
    mails = capture.call(capture.smtp.wait_for(5, timeout=20))
    return {mail["to"]: mail for mail in mails}


def headers_of(mail: dict, delivered: bool = False) -> str:
    """The headers of a sent message: as the relay queued it (what a DSN returns), or as
    the mailbox delivered it, with the Return-Path the final MTA adds (what an ARF shows)."""
    head = mail["raw"].split(b"\r\n\r\n", 1)[0].decode()
    return f"Return-Path: <{mail['from']}>\r\n{head}" if delivered else head


@pytest.fixture
def sent(tmp_path, db_url, capture, listener_for):
    """The campaign sent to C1..C5, and the listener running on the same database."""
    files = build(tmp_path, db_url)
    ok("campaign", "send", files["campaign.yaml"], "--db", db_url)
    return files, db_url, sent_mails(capture), listener_for(db_url)


def test_bulk_mail_carries_the_tenants_identities_and_a_token_per_delivery(sent):
    _files, _db, mails, _listener = sent
    envelopes = set()
    for mail in mails.values():
        parsed = email.message_from_bytes(mail["raw"], policy=email.policy.default)
        assert parsed["From"] == "Acme Motors <offers@acme-motors.example>"
        assert parsed["Reply-To"] == "sales@acme-motors.example"
        assert parsed["List-Unsubscribe"].startswith(f"<mailto:unsubscribe@{DOMAIN}?subject=unsubscribe-")
        local, _, domain = mail["from"].partition("@")
        assert domain == DOMAIN and local.startswith("bounces+") and local == local.lower(), mail["from"]
        envelopes.add(mail["from"])
    assert len(envelopes) == 5  # one token per delivery


def test_unsubscribe_mail_dsn_and_arf_become_ledger_events_check_and_export_show(sent, tmp_path):
    files, db, mails, listener = sent
    port = listener.port
    ava, ben, cy, eve = (mails[f"{name}@example.com"] for name in ("ava", "ben", "cy", "eve"))

    # C1 replies to the List-Unsubscribe mailto from another address of hers: the signed
    # token in the subject names her delivery's address.
    mailto = email.message_from_bytes(ava["raw"], policy=email.policy.default)["List-Unsubscribe"]
    subject = mailto.split("?subject=", 1)[1].split(">", 1)[0]
    assert deliver(port, "ava.smith@work.example", f"unsubscribe@{DOMAIN}",
                   person_mail("ava.smith@work.example", f"unsubscribe@{DOMAIN}", subject))[0] == 250
    # C4 writes to the unsubscribe address by hand, no token: her From address is matched.
    assert deliver(port, "dee@example.com", f"unsubscribe@{DOMAIN}",
                   person_mail("Dee Park <dee@example.com>", f"unsubscribe@{DOMAIN}", "unsubscribe"))[0] == 250

    # C2's mailbox does not exist: Postfix returns a DSN to C2's envelope sender.
    dsn = postfix_dsn(ben["from"], "ben@example.com", headers_of(ben))
    assert deliver(port, "", ben["from"], dsn)[0] == 250
    assert deliver(port, "", ben["from"], dsn)[0] == 250  # the relay sent it twice: one block
    # C5's server is down for hours: a delay notice (soft bounce).
    assert deliver(port, "", eve["from"], postfix_dsn(eve["from"], "eve@example.com", headers_of(eve), action="delayed",
                                                     status="4.4.1", diagnostic="connect to mx.example.com: Connection timed out"))[0] == 250
    # C3 pressed "report spam": the feedback loop sends an ARF report to the envelope sender.
    original = headers_of(cy, delivered=True) + "\r\n\r\n(body)"
    assert deliver(port, "", cy["from"], arf_report(cy["from"], "cy@example.com", original))[0] == 250

    # The next check of the campaign suppresses exactly them, with the reason gating gives.
    out = tmp_path / "decisions.csv"
    ok("campaign", "check", files["campaign.yaml"], "--out", out, "--db", db)
    with open(out, newline="") as handle:
        decisions = {row["external_id"]: (row["decision"], row["reason"]) for row in csv.DictReader(handle)}
    assert decisions == {
        "C1": ("suppress", "consent_revoked"),  # the mailto revoke, as one-click records it
        "C2": ("suppress", "do_not_contact"),  # hard bounce: a block
        "C3": ("suppress", "do_not_contact"),  # complaint: a block
        "C4": ("suppress", "consent_revoked"),
        "C5": ("send", ""),  # a soft bounce blocks nothing
    }

    export = tmp_path / "export.csv"
    ok("campaign", "export", "spring-offer", "--tenant", "acme-motors", "--out", export, "--db", db)
    with open(export, newline="") as handle:
        rows = {row["external_id"]: row for row in csv.DictReader(handle)}
    assert (rows["C2"]["state"], rows["C2"]["outcome"], rows["C2"]["feedback"]) == ("failed", "failed", "hard_bounce")
    assert rows["C2"]["last_error"].startswith("bounced 5.1.1: 550 5.1.1 Recipient address rejected")
    assert (rows["C3"]["state"], rows["C3"]["feedback"]) == ("sent", "complaint")
    assert (rows["C5"]["state"], rows["C5"]["feedback"], rows["C5"]["soft_bounces"]) == ("sent", "soft_bounce", "1")
    assert rows["C5"]["last_error"].startswith("delayed 4.4.1")
    assert (rows["C1"]["feedback"], rows["C4"]["feedback"]) == ("", "")
    status = json.loads(ok("campaign", "status", "spring-offer", "--tenant", "acme-motors", "--json", "--db", db).out)
    assert status["feedback"] == {"hard_bounce": 1, "complaint": 1, "soft_bounce": 1}
    assert "came back by mail: complaint 1, hard bounce 1, soft bounce 1" in ok(
        "campaign", "status", "spring-offer", "--tenant", "acme-motors", "--db", db).out

    events = sql(db, "select c.external_id, e.action, e.channel, e.class_code, e.party, e.address, e.method, e.cause "
                     "from consent_events e join contacts c on c.id = e.contact_id order by e.id")
    assert [tuple(e) for e in events] == [
        ("C1", "revoke", "email", "*", "*", "ava@example.com", "mailto", None),
        ("C4", "revoke", "email", "*", "*", "dee@example.com", "mailto", None),
        ("C2", "block", "email", None, None, "ben@example.com", "dsn", "hard_bounce"),
        ("C3", "block", "email", None, None, "cy@example.com", "feedback_report", "complaint"),
        ("C3", "revoke", "email", "marketing", "first", "cy@example.com", "feedback_report", None),
    ]
    assert [listener.count(kind) for kind in ("unsubscribe", "hard_bounce", "duplicate", "soft_bounce", "complaint")] == [2, 1, 1, 1, 1]

    # A second unsubscribe mail records nothing new (as a second one-click POST).
    assert deliver(port, "dee@example.com", f"unsubscribe@{DOMAIN}",
                   person_mail("dee@example.com", f"unsubscribe@{DOMAIN}", "unsubscribe"))[0] == 250
    assert len(sql(db, "select id from consent_events")) == 5
    # The hard bounce holds for individual replies too.
    refused = consentry("send", "individual", "--tenant", "acme-motors", "--contact", "C2", "--channel", "email",
                        "--subject", "Your quote", "--body", "Hi Ben", "--db", db)
    assert refused.code != 0 and "do_not_contact" in refused.err


def test_forged_missing_or_unknown_get_the_documented_answers(sent):
    _files, db, mails, listener = sent
    port = listener.port
    ben = mails["ben@example.com"]
    real = ben["from"].split("+", 1)[1].split("@", 1)[0]
    forged = ("a" if real[0] != "a" else "b") + real[1:]
    dsn = postfix_dsn(f"bounces+{forged}@{DOMAIN}", "ben@example.com", headers_of(ben))
    # A forged token: accepted (a relay must not bounce a bounce), nothing recorded.
    assert deliver(port, "", f"bounces+{forged}@{DOMAIN}", dsn)[0] == 250
    # No token at all, and a message that is no report: accepted, nothing recorded.
    assert deliver(port, "", f"bounces@{DOMAIN}", dsn)[0] == 250
    assert deliver(port, "", f"bounces@{DOMAIN}", b"\x00\xff garbage\r\nnot: a [report\r\n\r\n\xfe")[0] == 250
    # The right token in a report about somebody else: nothing.
    assert deliver(port, "", ben["from"], postfix_dsn(ben["from"], "ava@example.com", headers_of(ben)))[0] == 250
    # An unsubscribe mail from nobody we know, with no token: nothing.
    assert deliver(port, "x@nowhere.example", f"Unsubscribe@{DOMAIN.upper()}",
                   person_mail("x@nowhere.example", f"unsubscribe@{DOMAIN}", "unsubscribe"))[0] == 250
    # Somebody else's mailbox, or another domain: refused at RCPT.
    code, reply = deliver(port, "", f"postmaster@{DOMAIN}", b"Subject: hi\r\n\r\nhi\r\n")
    assert code == 550 and b"5.1.1" in reply
    assert deliver(port, "", "bounces@elsewhere.example", b"Subject: hi\r\n\r\nhi\r\n")[0] == 550
    assert sql(db, "select count(*) from consent_events")[0][0] == 0
    assert sql(db, "select count(*) from deliveries where feedback is not null")[0][0] == 0
    assert listener.count("unmatched") == 5
    assert listener.count("refused", tenant="other") == 2


def test_a_database_error_answers_451_and_the_retry_records_it(sent):
    """A message we could not record is refused with 451: the relay keeps it and delivers
    it again later, and that retry is recorded. (The table the write needs is renamed away
    for the first attempt: a real database error, made quickly on both databases.)"""
    _files, db, mails, listener = sent
    ben = mails["ben@example.com"]
    dsn = postfix_dsn(ben["from"], "ben@example.com", headers_of(ben))
    sql(db, "alter table deliveries rename to deliveries_away")
    try:
        code, _reply = deliver(listener.port, "", ben["from"], dsn)
    finally:
        sql(db, "alter table deliveries_away rename to deliveries")
    assert code == 451
    assert sql(db, "select count(*) from consent_events")[0][0] == 0
    assert deliver(listener.port, "", ben["from"], dsn)[0] == 250
    assert [row[0] for row in sql(db, "select cause from consent_events")] == ["hard_bounce"]
