"""`make demo` is the product's front door: it must keep working, at any hour, and never mail
or text anyone it must not.

The demo gates at the wall clock, so these assertions hold whatever the hour: the generated
history is dated relative to the demo's start, and every fact is checked as of the instant
each message arrived (`received_at` in the capture store).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import phonenumbers
import pytest


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def e164(phone: str) -> str | None:
    try:
        number = phonenumbers.parse(phone, "US")
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def latest_wins(events: list[dict[str, str]], at: datetime, actions: tuple[str, str], covers) -> str | None:  # noqa: ANN001
    """The action of the latest event of `actions` that `covers` matches, as of `at`."""
    seen = [e for e in events if e["action"] in actions and covers(e) and instant(e["occurred_at"]) <= at]
    return max(seen, key=lambda e: instant(e["occurred_at"]))["action"] if seen else None


def blocked(events, channel: str, address: str, at: datetime) -> bool:  # noqa: ANN001
    covers = lambda e: e["channel"] in (channel, "*") and e["address"] in ("", address)  # noqa: E731
    return latest_wins(events, at, ("block", "unblock"), covers) == "block"


def revoked_for_email_marketing(events, address: str, at: datetime) -> bool:  # noqa: ANN001
    def covers(e: dict[str, str]) -> bool:
        return (e["channel"] in ("email", "*") and e["class"] in ("marketing", "*")
                and e["party"] in ("first", "*", "") and e["address"] in ("", address))
    return latest_wins(events, at, ("grant", "revoke"), covers) == "revoke"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "engine.demo", "--contacts", "300", "--dir", str(workdir)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    messages = [json.loads(line) for line in (workdir / "capture" / "messages.jsonl").read_text(encoding="utf-8").splitlines()]
    contacts = {row["external_id"]: row for row in rows(workdir / "contacts.csv")}
    events: dict[str, list[dict[str, str]]] = defaultdict(list)
    for event in rows(workdir / "events.csv"):
        events[event["external_id"]].append(event)
    return result.stdout, workdir, messages, contacts, events


def test_the_demo_runs_the_whole_job(demo):
    out = demo[0]
    assert "sending again sends nothing twice" in out
    assert "HTTP 200: unsubscribe recorded" in out
    assert "do_not_contact" in out  # the texted STOP, honoured for a salesperson's reply
    assert "deferred" in out and "quiet hours" in out  # the narration says what the hour changes
    assert "The capture servers received" in out and " 0 emails" not in out


def test_no_bulk_email_reaches_an_opted_out_revoked_or_blocked_contact(demo):
    _out, workdir, messages, contacts, events = demo
    bulk = [m for m in messages if m["channel"] == "email" and any(n.lower() == "list-unsubscribe" for n, _v in m["headers"])]
    individual = [m for m in messages if m["channel"] == "email" and m not in bulk]
    # The one deliberate individual email: the salesperson's reply to C0000003.
    assert [m["to"].lower() for m in individual] == [contacts["C0000003"]["email"].lower()]
    assert bulk and len({m["to"].lower() for m in bulk}) == len(bulk), "an address got the eDM twice"

    # Who each eDM went to (several contacts can share an address: the export says which one).
    sent = {row["address"].lower(): row["external_id"] for row in rows(workdir / "edm-deliveries.csv") if row["state"] == "sent"}
    assert set(sent) == {m["to"].lower() for m in bulk}
    for mail in bulk:
        address, at = mail["to"].lower(), instant(mail["received_at"])
        contact = contacts[sent[address]]
        assert contact["email"].lower() == address
        history = events[contact["external_id"]]
        assert contact["opted_out"] != "true", (contact["external_id"], "opted out")
        assert not revoked_for_email_marketing(history, address, at), (contact["external_id"], "revoked email marketing")
        assert not blocked(history, "email", address, at), (contact["external_id"], "blocked on email")
    # The data holds every kind of contact that must be held back, so the test means something.
    end = max(instant(m["received_at"]) for m in bulk)
    with_email = [c for c in contacts.values() if c["email"]]
    assert sum(c["opted_out"] == "true" for c in with_email) >= 10
    assert sum(revoked_for_email_marketing(events[c["external_id"]], c["email"].lower(), end) for c in with_email) >= 5
    assert sum(blocked(events[c["external_id"]], "email", c["email"].lower(), end) for c in with_email) >= 3


def test_no_text_reaches_a_number_blocked_on_sms(demo):
    _out, _workdir, messages, contacts, events = demo
    by_number: dict[str, list[dict[str, str]]] = defaultdict(list)
    for contact in contacts.values():
        number = e164(contact["phone"]) if contact["phone"] else None
        if number:
            by_number[number].append(contact)
    # Campaign texts, opt-in requests and the confirmation of the demo's live STOP (that STOP is
    # not in events.csv: a number is checked against the history it had when texted).
    texts = [m for m in messages if m["channel"] == "sms"]
    assert texts  # at least the STOP confirmation, at any hour
    for text in texts:
        at, owners = instant(text["received_at"]), by_number[text["to"]]
        assert owners, f"{text['to']} is no contact's number"
        # A number shared by several contacts may be texted for one who is not blocked.
        assert any(not blocked(events[c["external_id"]], "sms", text["to"], at) for c in owners), (text["to"], "blocked on sms")
