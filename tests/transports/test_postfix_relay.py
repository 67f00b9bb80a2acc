"""A campaign through a real relay: Debian's Postfix with STARTTLS (a private CA) and SASL
AUTH, relaying to our capture server, driven by the real `consentry` commands.

Each fault of the relay (a certificate we do not trust, a refused password, recipients
refused by policy) must stop the campaign with the reason in plain words and the command
that resumes it, leave every recipient pending, and, once fixed, `campaign resume` must
deliver each recipient exactly once, counted where Postfix hands the messages on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.capture import ThreadedCapture
from tests.cli import consentry, ok
from tests.servers import PostfixServer

TENANT = """\
tenant: relay-motors
name: Relay Motors
regime: opt_out
country: US
timezone: America/Chicago
postal_address: "1 Main St, Springfield, IL 62701, USA"
classes:
  marketing: {mode: opt_out}
  transactional: {mode: exempt}
"""

CAMPAIGN = """\
campaign: relay-offer
tenant: relay-motors
kind: bulk
channel: email
class: marketing
template: spring_offer
subject: "Your spring service offer"
sender: {email: service@relay-motors.example, name: Relay Motors Service}
"""

RECIPIENTS = 12  # more than CONSENTRY_SMTP_POLICY_STOP_AFTER's default of 5 in a row
RESUME = "`consentry campaign resume relay-offer --tenant relay-motors`"
EHLO_NAME = "mailer.relay-motors.example"


@pytest.fixture
def campaign(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A tenant, RECIPIENTS contacts at customers.example (two more at partner.example, kept
    out of the campaign's audience by default), the campaign file; fast retries."""
    (tmp_path / "tenant.yaml").write_text(TENANT)
    with (tmp_path / "contacts.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "first_name", "last_name", "email"])
        for n in range(1, RECIPIENTS + 1):
            out.writerow([f"R{n:02d}", "Ava", f"Customer{n}", f"customer{n}@customers.example"])
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    for args in (["db", "init"], ["tenant", "apply", tmp_path / "tenant.yaml"],
                 ["contacts", "import", tmp_path / "contacts.csv", "--tenant", "relay-motors"]):
        ok(*args, "--db", sqlite_url)
    monkeypatch.setenv("CONSENTRY_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("CONSENTRY_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("CONSENTRY_SMTP_EHLO_NAME", EHLO_NAME)
    return tmp_path / "campaign.yaml", sqlite_url


def use_relay(monkeypatch: pytest.MonkeyPatch, postfix: PostfixServer, *, password: str | None = None,
              trusted: bool = True) -> None:
    monkeypatch.setenv("CONSENTRY_SMTP_URL", postfix.url(password))
    if trusted:
        monkeypatch.setenv("CONSENTRY_SMTP_CA_FILE", str(postfix.ca_file))
    else:
        monkeypatch.delenv("CONSENTRY_SMTP_CA_FILE", raising=False)


def delivered(sink: ThreadedCapture, postfix: PostfixServer, expected: int) -> dict[str, int]:
    """Messages per recipient at the sink, once Postfix relayed all it accepted."""
    postfix.wait_until_relayed()
    mails = sink.call(sink.smtp.wait_for(expected, timeout=10))
    counts: dict[str, int] = {}
    for mail in mails:
        for recipient in mail["to"] if isinstance(mail["to"], list) else [mail["to"]]:
            counts[recipient] = counts.get(recipient, 0) + 1
    assert sink.smtp.duplicates == 0, "a Message-ID reached the sink twice"
    return counts


def everyone_once() -> dict[str, int]:
    return {f"customer{n}@customers.example": 1 for n in range(1, RECIPIENTS + 1)}


def export(db: str, path: Path) -> dict[str, dict[str, str]]:
    ok("campaign", "export", "relay-offer", "--tenant", "relay-motors", "--out", path, "--db", db)
    with path.open(newline="") as handle:
        return {row["external_id"]: row for row in csv.DictReader(handle)}


def status(db: str) -> dict:
    return json.loads(ok("campaign", "status", "relay-offer", "--tenant", "relay-motors", "--json", "--db", db).out)


def blocks(db: str) -> int:
    engine = create_engine(db.replace("+aiosqlite", ""))
    with engine.connect() as conn:
        count = conn.execute(text("select count(*) from consent_events where cause is not null")).scalar_one()
    engine.dispose()
    return count


def assert_stopped_pending(db: str, tmp_path: Path, says: str) -> None:
    rows = export(db, tmp_path / "stopped.csv")
    assert len(rows) == RECIPIENTS
    assert {row["state"] for row in rows.values()} == {"pending"}
    assert all(says in row["last_error"] for row in rows.values()), [row["last_error"] for row in rows.values()]
    body = status(db)
    assert body["status"] == "incomplete" and body["states"] == {"pending": RECIPIENTS}
    assert sum(item["count"] for item in body["last_errors"]) == RECIPIENTS
    assert all(says in item["last_error"] and item["state"] == "pending" for item in body["last_errors"])
    assert blocks(db) == 0  # a fault of the relay says nothing about the addresses


def resume_completes(db: str, sink: ThreadedCapture, postfix: PostfixServer, already: int = 0) -> None:
    result = ok("campaign", "resume", "relay-offer", "--tenant", "relay-motors", "--db", db)
    assert "finished" in result.out and f"this run sent {RECIPIENTS - already:,}" in result.out
    assert delivered(sink, postfix, RECIPIENTS) == everyone_once()
    assert status(db)["states"] == {"sent": RECIPIENTS}


def test_a_campaign_and_an_individual_reply_through_postfix(campaign, postfix, relay_sink, monkeypatch):  # noqa: ANN001
    path, db = campaign
    use_relay(monkeypatch, postfix)
    result = ok("campaign", "send", path, "--db", db)
    assert "finished" in result.out
    assert delivered(relay_sink, postfix, RECIPIENTS) == everyone_once()
    # Postfix says how each message reached it: over TLS, authenticated (ESMTPSA), from the
    # EHLO name we configured.
    for mail in relay_sink.smtp.messages:
        received = next(value for name, value in mail["headers"] if name.lower() == "received")
        assert f"from {EHLO_NAME}" in received and "with ESMTPSA" in received and "using TLS" in received
        assert any(name == "List-Unsubscribe-Post" for name, _value in mail["headers"])

    reply = ok("send", "individual", "--tenant", "relay-motors", "--contact", "R03", "--channel", "email",
               "--subject", "About your car", "--body", "It is ready to pick up.", "--db", db)
    assert "sent to R03 at customer3@customers.example" in reply.out
    postfix.wait_until_relayed()
    mails = relay_sink.call(relay_sink.smtp.wait_for(RECIPIENTS + 1, timeout=10))
    assert mails[-1]["to"] in ("customer3@customers.example", ["customer3@customers.example"])
    assert "It is ready to pick up." in mails[-1]["body"]


def test_an_untrusted_certificate_stops_the_campaign_and_a_ca_file_resumes_it(campaign, postfix, relay_sink, monkeypatch,
                                                                              tmp_path):  # noqa: ANN001
    path, db = campaign
    use_relay(monkeypatch, postfix, trusted=False)
    handshakes_before = postfix.log_tail(1_000_000).count("SSL_accept error")
    stopped = consentry("campaign", "send", path, "--db", db)
    assert stopped.code == 3, stopped.err
    assert "campaign stopped: relay certificate not trusted (the system's trust store" in stopped.err
    assert "certificate verify failed: unable to get local issuer certificate" in stopped.err
    assert "CONSENTRY_SMTP_CA_FILE" in stopped.err and RESUME in stopped.err
    # It stopped instead of retrying: at most one failed handshake per worker (16), where
    # treating it as transient made hundreds.
    assert 1 <= postfix.log_tail(1_000_000).count("SSL_accept error") - handshakes_before <= 16
    assert relay_sink.smtp.messages == []
    assert_stopped_pending(db, tmp_path, "relay certificate not trusted")

    use_relay(monkeypatch, postfix)
    resume_completes(db, relay_sink, postfix)


def test_a_refused_password_stops_the_campaign_and_the_right_one_resumes_it(campaign, postfix, relay_sink, monkeypatch,
                                                                            tmp_path):  # noqa: ANN001
    path, db = campaign
    use_relay(monkeypatch, postfix, password="not-the-password")
    stopped = consentry("campaign", "send", path, "--db", db)
    assert stopped.code == 3, stopped.err
    assert f"campaign stopped: relay refused credentials for user {postfix.user}: 535 5.7.8 " in stopped.err
    assert "not-the-password" not in stopped.err and RESUME in stopped.err
    assert relay_sink.smtp.messages == []
    assert_stopped_pending(db, tmp_path, "relay refused credentials")

    use_relay(monkeypatch, postfix)
    resume_completes(db, relay_sink, postfix)


def test_recipients_refused_by_policy_stop_the_campaign_and_resume_after_the_fix(campaign, postfix, relay_sink,
                                                                                 monkeypatch, tmp_path):  # noqa: ANN001
    path, db = campaign
    use_relay(monkeypatch, postfix)
    postfix.set_recipient_access({"customers.example": "REJECT"})
    stopped = consentry("campaign", "send", path, "--db", db)
    assert stopped.code == 3, stopped.err
    assert "campaign stopped: relay refuses recipients by policy: 554 5.7.1 <customer" in stopped.err
    assert "Recipient address rejected: Access denied (5 in a row)" in stopped.err and RESUME in stopped.err
    assert relay_sink.smtp.messages == []
    # The refused ones are pending, not failed: the refusal was the relay's, not theirs.
    rows = export(db, tmp_path / "stopped.csv")
    assert {row["state"] for row in rows.values()} == {"pending"}
    assert sum("5.7.1" in row["last_error"] and "Access denied" in row["last_error"] for row in rows.values()) >= 5
    assert blocks(db) == 0

    postfix.set_recipient_access({})  # postmap + postfix reload
    resume_completes(db, relay_sink, postfix)


def test_a_few_recipients_refused_by_policy_fail_alone(campaign, postfix, relay_sink, monkeypatch, tmp_path):  # noqa: ANN001
    """Fewer than five refusals can never make a row of five: they are the recipients'."""
    path, db = campaign
    use_relay(monkeypatch, postfix)
    postfix.set_recipient_access({"customer3@customers.example": "REJECT", "customer7@customers.example": "REJECT"})
    result = ok("campaign", "send", path, "--db", db)
    assert "finished" in result.out and "failed 2" in result.out
    assert delivered(relay_sink, postfix, RECIPIENTS - 2) == {
        address: 1 for address in everyone_once() if address not in ("customer3@customers.example", "customer7@customers.example")
    }
    rows = export(db, tmp_path / "out.csv")
    assert [(row["state"], "554: 5.7.1" in row["last_error"]) for row in (rows["R03"], rows["R07"])] == [("failed", True)] * 2
    assert rows["R01"]["state"] == "sent" and rows["R01"]["last_error"] == ""


def test_a_missing_ca_file_is_refused_before_anything_is_launched(campaign, monkeypatch, tmp_path):  # noqa: ANN001
    path, db = campaign
    monkeypatch.setenv("CONSENTRY_SMTP_URL", "smtp://mailer:pw@127.0.0.1:1?starttls=true")
    monkeypatch.setenv("CONSENTRY_SMTP_CA_FILE", str(tmp_path / "nowhere.pem"))
    refused = consentry("campaign", "send", path, "--db", db)
    assert refused.code == 2
    assert refused.err.strip() == f"error: CONSENTRY_SMTP_CA_FILE: {tmp_path / 'nowhere.pem'}: no such file"
    assert consentry("campaign", "status", "relay-offer", "--tenant", "relay-motors", "--db", db).code == 2  # not launched
    reply = consentry("send", "individual", "--tenant", "relay-motors", "--contact", "R01", "--channel", "email",
                      "--subject", "Hello", "--body", "Hi", "--db", db)
    assert reply.code == 2 and "CONSENTRY_SMTP_CA_FILE" in reply.err


def test_a_dkim_signature_survives_the_relay(campaign, postfix, relay_sink, monkeypatch, tmp_path):  # noqa: ANN001
    """Signed by the campaign's worker processes, verified on the bytes Postfix delivered
    (it adds Received headers and may rewrap: relaxed canonicalisation must hold)."""
    import base64
    import subprocess

    import dkim

    path, db = campaign
    key_file = tmp_path / "relay-motors.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key_file), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    tenant = tmp_path / "tenant.yaml"
    tenant.write_text(tenant.read_text() + "dkim:\n  - {domain: relay-motors.example, selector: s2026, key_file: relay-motors.pem}\n")
    ok("tenant", "apply", tenant, "--db", db)
    use_relay(monkeypatch, postfix)
    monkeypatch.setenv("CONSENTRY_DKIM_PROCESSES", "2")

    assert "finished" in ok("campaign", "send", path, "--db", db).out
    assert delivered(relay_sink, postfix, RECIPIENTS) == everyone_once()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.relay-motors.example."
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    for mail in relay_sink.smtp.messages:
        assert b"\nReceived: " in b"\n" + mail["raw"], "the bytes as the relay delivered them"
        assert dkim.verify(mail["raw"], dnsfunc=dns), mail["raw"][:600]
