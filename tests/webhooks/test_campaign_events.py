"""A campaign send's `campaign.finished` and `delivery.failed`, through the command line."""

from __future__ import annotations

import csv
from collections import Counter

from tests.cli import consentry, ok
from tests.engine.scenario import AT, build


def test_a_finished_campaign_and_its_bounce_reach_the_receiver(tmp_path, sqlite_url, capture, receivers) -> None:
    db = sqlite_url
    files = build(tmp_path / "dealership", db, enforce_review=False)
    receiver = receivers(name="campaign")
    added = ok("webhooks", "add", receiver.url, "--tenant", "acme-motors", "--events",
               "campaign.finished,delivery.failed,consent.block", "--description", "DMS", "--db", db)
    secret = added.out.strip()
    assert secret.startswith("whsec_") and "\n" not in secret and "not shown again" in added.err
    receiver.start(secret)
    listed = ok("webhooks", "list", "--tenant", "acme-motors", "--db", db).out
    assert receiver.url in listed and "campaign.finished,consent.block,delivery.failed" in listed and secret not in listed

    capture.run(capture.smtp.bounce.add, "ava@example.com")
    ok("campaign", "send", files["email"], "--at", AT, "--db", db)
    ok("campaign", "send", files["email"], "--at", AT, "--db", db)  # settling again enqueues nothing new
    dispatched = ok("webhooks", "dispatch", "--until-idle", "--db", db)
    assert "3 webhook attempts made" in dispatched.out

    events = {event["type"]: event for event in receiver.events()}
    assert Counter(event["type"] for event in receiver.events()) == {
        "campaign.finished": 1, "delivery.failed": 1, "consent.block": 1,
    }
    failed = events["delivery.failed"]["data"]
    assert (failed["campaign"], failed["contact"], failed["channel"], failed["address"]) == (
        "spring-offer", {"external_id": "E1"}, "email", "ava@example.com")
    assert failed["error"].startswith("550")
    bounce = events["consent.block"]["data"]
    assert (bounce["source"], bounce["cause"], bounce["method"]) == ("bounce", "hard_bounce", "delivery_failure")

    finished = events["campaign.finished"]["data"]
    ok("campaign", "export", "spring-offer", "--tenant", "acme-motors", "--out", tmp_path / "out.csv", "--db", db)
    with open(tmp_path / "out.csv", newline="") as handle:
        outcomes = Counter(row["outcome"] for row in csv.DictReader(handle))
    assert finished["campaign"] == "spring-offer" and finished["channel"] == "email"
    assert finished["outcomes"] == dict(outcomes) and finished["recipients"] == sum(outcomes.values())
    assert events["campaign.finished"]["tenant"] == "acme-motors"

    shown = ok("webhooks", "deliveries", "1", "--tenant", "acme-motors", "--db", db).out
    assert shown.splitlines()[0].startswith("pending=0 delivered=3 failed=0")
    assert ok("webhooks", "remove", "1", "--tenant", "acme-motors", "--db", db).out.startswith("webhook endpoint 1 ")
    assert ok("webhooks", "list", "--tenant", "acme-motors", "--db", db).out == ""


def test_bad_webhook_commands_name_the_field(tmp_path, sqlite_url) -> None:
    build(tmp_path, sqlite_url)
    result = consentry("webhooks", "add", "http://dms.example/hook", "--tenant", "acme-motors", "--events",
                       "consent.revoke,consent.nope", "--db", sqlite_url)
    assert result.code == 2
    assert "url: " in result.err and "plain http is allowed only to a loopback address" in result.err
    assert "event_types[1]: 'consent.nope' is not an event type" in result.err
    missing = consentry("webhooks", "remove", "7", "--tenant", "acme-motors", "--db", sqlite_url)
    assert missing.code == 2 and "no webhook endpoint 7" in missing.err
