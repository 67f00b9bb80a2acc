"""`campaign send` end to end: real SMTP and the official twilio client on loopback."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from engine.render.tokens import verify_token
from tests.cli import consentry, ok
from tests.engine.scenario import AT, AT_INSTANT, build, iso

EXPORT = ["external_id", "channel", "address", "decision", "reason", "defer_until", "state", "provider_id", "attempts", "sent_at"]
# Added columns (FORMATS.md allows adding): what happened to the recipient, in one word.
EXPORT_ADDED = ["outcome", "last_error", "feedback", "soft_bounces"]


def export(db, code, path, tenant="acme-motors"):
    ok("campaign", "export", code, "--tenant", tenant, "--out", path, "--db", db)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == EXPORT + EXPORT_ADDED
    return {row["external_id"]: row for row in rows}


def sync_url(db):
    return db.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg") if db.startswith("sqlite") else None


def sql(db, query, **params):
    engine = create_engine(sync_url(db))
    with engine.begin() as conn:
        result = conn.execute(text(query), params)
        rows = result.all() if result.returns_rows else []
    engine.dispose()
    return rows


@pytest.fixture
def dealership(tmp_path, sqlite_url):
    return build(tmp_path, sqlite_url, enforce_review=False), sqlite_url


def test_email_campaign_sends_each_recipient_once_with_compliance_headers(dealership, capture, tmp_path):
    files, db = dealership
    result = ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert "finished" in result.out
    mails = capture.call(capture.smtp.wait_for(3, timeout=10))
    # What a sending process exports, scraped while it runs: tests/infra/test_documented_metrics.py.
    # E1, E5 (E6 shares its address), E3 invalid, E2 none, E4 blocked, E7 opted out, E8 revoked; E9 sends (review not enforced)
    assert sorted(m["to"] for m in mails) == ["ava@example.com", "family@example.com", "mia@example.com"]
    for mail in mails:
        parsed = email.message_from_bytes(mail["raw"], policy=email.policy.default)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "mailto:" in parsed["List-Unsubscribe"] and "/u/" in parsed["List-Unsubscribe"]
        assert parsed.get_content_type() == "multipart/alternative"
        assert "1 Main St, Springfield" in parsed.get_body(("plain",)).get_content()
    rows = export(db, "spring-offer", tmp_path / "out.csv")
    assert rows["E1"]["state"] == "sent" and rows["E1"]["provider_id"].startswith("<") and rows["E1"]["attempts"] == "1"
    assert (rows["E6"]["decision"], rows["E6"]["reason"], rows["E6"]["state"]) == ("suppress", "duplicate_address", "suppressed")
    assert (rows["E4"]["reason"], rows["E4"]["state"]) == ("do_not_contact", "suppressed")

    again = ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert "sent 0" in again.out
    assert len(capture.smtp.messages) == 3
    status = json.loads(ok("campaign", "status", "spring-offer", "--tenant", "acme-motors", "--json", "--db", db).out)
    assert status["status"] == "finished" and status["states"]["sent"] == 3 and status["total"] == 9


def test_sms_campaign_footer_segments_and_the_opt_in_request(dealership, capture, tmp_path):
    files, db = dealership
    ok("campaign", "send", files["sms"], "--at", AT, "--db", db)
    texts = capture.call(capture.sms.wait_for(2, timeout=10))
    by_number = {t["to"]: t for t in texts}
    # S1 has consent: the campaign text, with the STOP footer as the first text to the number.
    assert by_number["+12135550201"]["body"].endswith("Reply STOP to opt out of texts from this number.")
    # S2 never said YES: the one text allowed is the tenant's opt-in request.
    assert "Please reply YES to confirm" in by_number["+12135550202"]["body"]
    assert set(by_number) == {"+12135550201", "+12135550202"}
    rows = export(db, "survey-texts", tmp_path / "sms.csv")
    assert rows["S1"]["state"] == "sent" and rows["S1"]["provider_id"].startswith("SM")
    assert (rows["S2"]["reason"], rows["S2"]["state"]) == ("awaiting_sms_opt_in", "sent")
    assert (rows["S5"]["decision"], rows["S5"]["state"], rows["S5"]["defer_until"]) == ("defer", "deferred", iso(AT_INSTANT + timedelta(hours=5)))
    segments = dict(sql(db, "select address, segments from deliveries where channel='sms' and state='sent'"))
    assert segments["+12135550201"] >= 1

    # A second campaign to the same number is no longer its first touch: no footer.
    second = files["sms"].read_text().replace("campaign: survey-texts", "campaign: survey-texts-2")
    (tmp_path / "sms2.yaml").write_text(second)
    ok("campaign", "send", tmp_path / "sms2.yaml", "--at", iso(AT_INSTANT + timedelta(days=2)), "--db", db)
    later = [t for t in capture.call(capture.sms.wait_for(3, timeout=10)) if t["to"] == "+12135550201"]
    assert len(later) == 2 and "Reply STOP" not in later[-1]["body"]


def test_an_sms_template_may_carry_the_unsubscribe_link(dealership, capture, tmp_path, monkeypatch):
    """A text signs an unsubscribe token only when its template shows a link (most say
    "Reply STOP" instead); one that shows it sends each recipient a link naming them."""
    files, db = dealership
    secret = "sms-link-secret-" + "s" * 32
    monkeypatch.setenv("CONSENTRY_PUBLIC_URL", "https://links.acme.example")
    monkeypatch.setenv("CONSENTRY_SECRET", secret)
    (tmp_path / "templates" / "sms").mkdir(parents=True)
    (tmp_path / "templates" / "sms" / "with_link.txt").write_text(
        "Hi {{ first_name }}! No more texts: {{ unsubscribe_url }}")
    campaign = tmp_path / "linked.yaml"
    campaign.write_text(files["sms"].read_text().replace("template: live_lead", "template: with_link"))
    ok("campaign", "send", campaign, "--at", AT, "--db", db)
    texts = {t["to"]: t["body"] for t in capture.call(capture.sms.wait_for(2, timeout=10))}
    [token] = re.findall(r"No more texts: https://links\.acme\.example/u/([A-Za-z0-9_-]+)\n", texts["+12135550201"])
    claims = verify_token(secret.encode(), token)
    [(contact_id,)] = sql(db, "select id from contacts where external_id = 'S1'")
    assert claims is not None and (claims.contact_id, claims.channel) == (contact_id, "sms")
    assert "/u/" not in texts["+12135550202"]  # the tenant's opt-in request shows no link


def test_a_relay_that_is_down_leaves_work_for_resume_and_nothing_twice(dealership, capture, tmp_path):
    files, db = dealership
    capture.run(setattr, capture.smtp, "refuse", True)
    down = consentry("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert down.code == 1 and "campaign resume spring-offer --tenant acme-motors" in down.err
    assert capture.smtp.messages == []
    capture.run(setattr, capture.smtp, "refuse", False)
    ok("campaign", "resume", "spring-offer", "--tenant", "acme-motors", "--db", db)
    mails = capture.call(capture.smtp.wait_for(3, timeout=10))
    assert sorted(m["to"] for m in mails) == ["ava@example.com", "family@example.com", "mia@example.com"]
    ok("campaign", "resume", "spring-offer", "--tenant", "acme-motors", "--db", db)
    assert len(capture.smtp.messages) == 3 and capture.smtp.duplicates == 0


def test_permanent_failures_become_blocks_that_later_campaigns_honour(dealership, capture, tmp_path):
    files, db = dealership
    capture.run(capture.smtp.bounce.add, "ava@example.com")
    ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    rows = export(db, "spring-offer", tmp_path / "out.csv")
    assert rows["E1"]["state"] == "failed"
    events = sql(db, "select action, channel, address, cause from consent_events where cause is not null")
    assert events == [("block", "email", "ava@example.com", "hard_bounce")]
    out = tmp_path / "check.csv"
    files["email"].write_text(files["email"].read_text().replace("campaign: spring-offer", "campaign: next-offer"))
    # A day after the send: the bounce is recorded when the send went, whatever the clock.
    ok("campaign", "check", files["email"], "--at", iso(AT_INSTANT + timedelta(days=1)), "--out", out, "--db", db)
    with open(out, newline="") as handle:
        assert {r["external_id"]: r["reason"] for r in csv.DictReader(handle)}["E1"] == "do_not_contact"


def test_carrier_unsubscribed_number_becomes_a_block(dealership, capture, tmp_path):
    files, db = dealership
    capture.run(capture.sms.unsubscribed.add, "+12135550201")
    ok("campaign", "send", files["sms"], "--at", AT, "--db", db)
    rows = export(db, "survey-texts", tmp_path / "sms.csv")
    assert rows["S1"]["state"] == "failed"
    assert sql(db, "select cause from consent_events where cause is not null") == [("carrier_unsubscribed",)]


def test_header_injection_in_a_name_never_adds_a_header(dealership, capture):
    files, db = dealership
    sql(db, "update contacts set first_name = :name where external_id = 'E1'", name="Ava\r\nBcc: victim@example.org")
    ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    mails = capture.call(capture.smtp.wait_for(3, timeout=10))
    for mail in mails:
        parsed = email.message_from_bytes(mail["raw"], policy=email.policy.default)
        assert parsed["Bcc"] is None
        assert all(name.lower() != "bcc" for name, _value in mail["headers"])


def test_a_subject_with_a_line_break_is_rejected_before_anything_is_recorded(dealership, capture):
    files, db = dealership
    files["email"].write_text(files["email"].read_text().replace('"Your spring service offer"', '"Offer\\r\\nBcc: x@example.org"'))
    result = consentry("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert result.code == 2 and "subject" in result.err
    assert sql(db, "select count(*) from campaigns") == [(0,)]


def test_a_template_reaching_for_python_internals_fails_safely(dealership, capture, tmp_path):
    files, db = dealership
    (tmp_path / "templates" / "email").mkdir(parents=True)
    (tmp_path / "templates" / "email" / "evil.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    files["email"].write_text(files["email"].read_text().replace("template: spring_offer", "template: evil"))
    result = consentry("campaign", "send", files["email"], "--at", AT, "--db", db)
    assert result.code == 2 and f"{files['email']}:7: template:" in result.err
    assert capture.smtp.messages == [] and sql(db, "select count(*) from deliveries") == [(0,)]


def test_individual_replies_reach_the_opted_out_but_never_a_stop(dealership, capture):
    files, db = dealership
    reply = ok("send", "individual", "--tenant", "acme-motors", "--contact", "E7", "--channel", "email",
               "--subject", "Your quote", "--body", "Hi Sofia, here is your quote: {{ not a template }}", "--db", db)
    assert "sent to E7" in reply.out
    mail = capture.call(capture.smtp.wait_for(1, timeout=10))[0]
    parsed = email.message_from_bytes(mail["raw"], policy=email.policy.default)
    assert parsed["List-Unsubscribe"] is None and parsed["To"] == "sofia@example.com"
    assert "{{ not a template }}" in parsed.get_body(("plain",)).get_content()

    stopped = consentry("send", "individual", "--tenant", "acme-motors", "--contact", "S7", "--channel", "sms",
                        "--body", "Are you still interested?", "--db", db)
    assert stopped.code == 1 and "do_not_contact" in stopped.err
    assert capture.sms.messages == []
    assert sql(db, "select state, reason from deliveries where kind='individual' and channel='sms'") == [("suppressed", "do_not_contact")]


def test_a_stop_recorded_mid_campaign_is_honoured(tmp_path, sqlite_url, capture):
    """Each batch is gated just before it is sent, not when the campaign is launched."""
    from engine.demo.sample_data import write_dealership

    data = write_dealership(tmp_path / "d", contacts=60, seed=3, now=datetime.now(UTC))  # sent at the wall clock
    db = sqlite_url
    ok("db", "init", "--db", db)
    ok("tenant", "apply", data.tenant_yaml, "--db", db)
    ok("contacts", "import", data.contacts_csv, "--tenant", data.tenant, "--db", db)
    campaign = tmp_path / "edm.yaml"
    campaign.write_text(data.edm_yaml.read_text().replace("per_second: 500", "per_second: 10"))
    last = sql(db, "select c.external_id, p.address from contacts c join contact_points p on p.contact_id = c.id "
                   "where p.kind = 'email' and p.is_valid order by c.id desc limit 1")[0]
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db}
    process = subprocess.Popen([sys.executable, "-m", "engine", "campaign", "send", str(campaign), "--batch-size", "5",
                                "--concurrency", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        capture.call(capture.smtp.wait_for(1, timeout=30))
        (tmp_path / "stop.csv").write_text(
            "external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note\n"
            f"{last[0]},block,email,,,,email_link,{iso(datetime.now(UTC))},customer,,\n"
        )
        ok("consent", "import", tmp_path / "stop.csv", "--tenant", data.tenant, "--db", db)
        assert process.wait(60) == 0, process.stderr.read().decode()
    finally:
        process.kill()
    assert last[1] not in {m["to"] for m in capture.smtp.messages}
    assert sql(db, "select reason from deliveries d join contacts c on c.id = d.contact_id where c.external_id = :e", e=last[0]) == [("do_not_contact",)]


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_exactly_once_across_kill_9(tmp_path, sqlite_url, capture, channel):
    """Kill the sending process mid-campaign, resume: every recipient got exactly one message."""
    from engine.demo.sample_data import write_dealership

    data = write_dealership(tmp_path / "d", contacts=400, seed=11, now=AT_INSTANT)  # sent at AT
    db = sqlite_url
    ok("db", "init", "--db", db)
    ok("tenant", "apply", data.tenant_yaml, "--db", db)
    ok("contacts", "import", data.contacts_csv, "--tenant", data.tenant, "--db", db)
    ok("consent", "import", data.events_csv, "--tenant", data.tenant, "--db", db)
    campaign = data.edm_yaml if channel == "email" else data.sms_yaml
    server = capture.smtp if channel == "email" else capture.sms
    capture.run(setattr, server, "latency_ms", 5)
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db}
    args = [sys.executable, "-m", "engine", "campaign", "send", str(campaign), "--at", AT, "--batch-size", "50", "--concurrency", "8"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        capture.call(server.wait_for(60, timeout=120))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    arrived_before = len(server.messages)
    assert arrived_before < 300, "the campaign finished before it could be killed"
    code = "spring-service-offer" if channel == "email" else "live-lead-followup"
    resumed = consentry("campaign", "resume", code, "--tenant", data.tenant, "--db", db)
    assert resumed.code == 0, (resumed.err, sql(db, "select state, error from deliveries where state not in ('sent', 'suppressed', 'deferred')"))
    sent = sql(db, "select address from deliveries where state = 'sent'")
    received = [m["to"] for m in server.messages]
    missing = sorted(set(address for (address,) in sent) - set(received))
    extra = sorted(set(received) - set(address for (address,) in sent))
    assert (missing, extra) == ([], []), sql(db, "select state, address, error from deliveries where address in :a", a=tuple(missing + extra) or ("",))
    assert sorted(received) == sorted(address for (address,) in sent)
    assert len(received) == len(set(received)), "a recipient got two messages"
    if channel == "email":
        # In-doubt mail is re-sent with its Message-ID; only what was on the wire when the
        # process died (one message per worker: concurrency 8) can have arrived twice.
        assert server.duplicates <= 8
    assert sql(db, "select count(*) from deliveries where state in ('pending', 'sending')") == [(0,)]


def test_a_relay_refusing_the_sender_stops_the_campaign_without_failing_recipients(dealership, capture, tmp_path, monkeypatch):
    """A 5xx at MAIL FROM is everyone's problem, not each recipient's: stop, keep them pending."""
    import asyncio
    import threading

    async def refuse_sender(reader, writer):  # noqa: ANN001
        writer.write(b"220 strict.example ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            reply = {b"EHLO": b"250 strict.example\r\n", b"HELO": b"250 strict.example\r\n",
                     b"MAIL": b"553 5.7.1 sender not allowed\r\n", b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n")
            writer.write(reply)
            await writer.drain()
            if verb == b"QUIT":
                break
        writer.close()

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(refuse_sender, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        files, db = dealership
        monkeypatch.setenv("CONSENTRY_SMTP_URL", f"smtp://127.0.0.1:{port}")
        result = consentry("campaign", "send", files["email"], "--at", AT, "--db", db)
        assert result.code == 3 and "campaign stopped: relay refused the sender" in result.err and "sender not allowed" in result.err
        assert sql(db, "select count(*) from deliveries where state = 'failed'") == [(0,)]
        assert sql(db, "select count(*) from consent_events where cause is not null") == [(0,)]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    # With the right relay, a resume sends everyone.
    monkeypatch.setenv("CONSENTRY_SMTP_URL", capture.env["CONSENTRY_SMTP_URL"])
    ok("campaign", "resume", "spring-offer", "--tenant", "acme-motors", "--db", db)
    assert sorted(m["to"] for m in capture.call(capture.smtp.wait_for(3, timeout=10))) == ["ava@example.com", "family@example.com", "mia@example.com"]


def test_a_second_runner_of_the_same_campaign_waits_for_the_first_and_sends_nothing_twice(dealership, capture, tmp_path):
    """A second `resume` while the first runner is mid-send: it leaves the first runner's
    claimed rows alone, returns when they are done, and nobody gets two messages."""
    files, db = dealership
    capture.run(setattr, capture.smtp, "latency_ms", 400)
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db}
    first = subprocess.Popen([sys.executable, "-m", "engine", "campaign", "send", str(files["email"]), "--at", AT,
                              "--concurrency", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        capture.call(capture.smtp.wait_for(1, timeout=60))
        second = ok("campaign", "resume", "spring-offer", "--tenant", "acme-motors", "--db", db)
        assert "finished" in second.out or "running" in second.out
        assert first.wait(60) == 0, first.stderr.read().decode()
    finally:
        first.kill()
    assert sorted(m["to"] for m in capture.smtp.messages) == ["ava@example.com", "family@example.com", "mia@example.com"]
    assert capture.smtp.duplicates == 0
    status = json.loads(ok("campaign", "status", "spring-offer", "--tenant", "acme-motors", "--json", "--db", db).out)
    assert status["status"] == "finished" and status["outcomes"]["sent"] == 3
    assert sum(status["outcomes"].values()) == status["total"] == 9


def test_a_send_never_gates_in_the_past(dealership, capture):
    """A send must honour every revocation recorded until it goes: an --at before now is
    refused, nothing is launched or sent; check may replay the past."""
    files, db = dealership
    past = iso(datetime.now(UTC) - timedelta(days=1))
    refused = consentry("campaign", "send", files["email"], "--at", past, "--db", db)
    assert refused.code == 2
    assert "--at" in refused.err and "in the past" in refused.err and "campaign check --at" in refused.err
    assert sql(db, "select count(*) from campaigns") == [(0,)]
    assert capture.smtp.messages == []
    ok("campaign", "check", files["email"], "--at", past, "--db", db)
