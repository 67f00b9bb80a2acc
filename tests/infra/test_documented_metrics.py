"""Every metric docs/operations.md documents is recorded, and nothing undocumented is.

A real run: imports, a campaign sent by `consentry campaign send` (SMS, through a capture
server that fails every other request), a campaign left incomplete by a relay that is
down, `consentry serve` taking a DMS sync and a consent event over its API and trying an
outbound webhook, and `consentry inbound smtp` refusing a recipient. Each process is
scraped over HTTP, and the union of what they export must be the documented list.

The inline send is also the check that its metrics never miss: it waits for a scrape
after its last count, so the last scrape holds exactly what the delivery rows say, and its
per-batch JSON log adds up to the same.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.capture import ThreadedCapture
from tests.cli import consentry, ok
from tests.engine.scenario import AT, build
from tests.infra.processes import Consentry, Scraper, families, scrape

ROOT = Path(__file__).resolve().parents[2]


def documented() -> set[str]:
    """The names in the metrics table of docs/operations.md (a counter without `_total`,
    as Prometheus's parser names its family)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text[text.index("## Metrics"):text.index("### Label cardinality")]
    names = re.findall(r"^\| `(consentry_[a-z_]+)` \|", table, flags=re.MULTILINE)
    assert len(names) >= 10, names
    return {name.removesuffix("_total") for name in names}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict, key: str) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"POST {url}: {exc.code} {exc.read().decode()}") from None


def wait_for_families(url: str, wanted: set[str], timeout_s: float = 90) -> dict[str, list]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = families(scrape(url))
        if wanted <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_every_documented_metric_is_recorded_by_a_real_run(tmp_path, sqlite_url, monkeypatch):
    db = sqlite_url
    files = build(tmp_path, db, enforce_review=False)
    capture = ThreadedCapture(tmp_path / "capture", sms={"fail_every_n": 2})
    # No status callbacks: nothing serves them while the campaign is sent.
    fast = {"CONSENTRY_RETRY_ATTEMPTS": "4", "CONSENTRY_RETRY_BASE_S": "0.01", "CONSENTRY_CLAIM_TTL_S": "3",
            "CONSENTRY_STATUS_CALLBACKS": "off"}
    env = {**os.environ, **capture.env, **fast, "CONSENTRY_DATABASE_URL": db}
    processes: list[Consentry] = []
    try:
        # A relay that is down leaves the email campaign incomplete: an active campaign.
        for name, value in {**fast, "CONSENTRY_RETRY_ATTEMPTS": "1"}.items():
            monkeypatch.setenv(name, value)
        down = consentry("campaign", "send", files["email"], "--at", AT, "--db", db,
                         "--smtp-url", f"smtp://127.0.0.1:{closed_port()}")
        assert down.code in (1, 3), down.err

        # The inline send, scraped every 0.2 s while it lives.
        send = Consentry(tmp_path, "send", ["campaign", "send", str(files["sms"]), "--at", AT, "--batch-size", "2",
                                            "--metrics-port", "0", "--metrics-linger", "30"], env)
        processes.append(send)
        scraper = Scraper(send.wait_for_line(r"metrics on (http://\S+)").group(1))
        assert send.wait(180) == 0, send.text()
        last = scraper.stop()
        sent_rows = sqlite3.connect(db.split("///", 1)[1]).execute(
            "select count(*) from deliveries where channel = 'sms' and state = 'sent'").fetchone()[0]
        assert sent_rows > 0
        exported = families(last)
        assert "consentry_deliveries" in exported, (scraper.count, scraper.errors[-3:], last[:2000])
        sent_metric = sum(s.value for s in exported["consentry_deliveries"]
                          if s.name == "consentry_deliveries_total" and s.labels["state"] in ("sent", "opt_in_request"))
        assert sent_metric == sent_rows, last
        batches = [json.loads(line) for line in send.err.read_text(encoding="utf-8").splitlines()
                   if line.startswith("{")]
        assert batches and all(b["event"] == "batch" and b["campaign"] == "survey-texts" for b in batches), batches
        # One line per batch, written as each one finishes (not necessarily in order).
        assert sorted(b["batch"] for b in batches) == list(range(1, len(batches) + 1))
        assert sum(b["recipients"] for b in batches) == 7
        assert sum(b["sent"] for b in batches) == sent_rows
        assert all(b["duration_s"] >= b["load_s"] >= 0 for b in batches)

        # serve: a DMS sync and a consent event through the API, an outbound webhook to a
        # receiver that is down, the active-campaign count.
        key = ok("keys", "create", "--tenant", "acme-motors", "--role", "admin", "--name", "metrics", "--db", db).out.strip()
        serve = Consentry(tmp_path, "serve", ["serve", "--port", "0", "--metrics-port", "0"], env)
        processes.append(serve)
        # The inbound SMTP server is independent of serve: it starts alongside (checked below).
        inbound = Consentry(tmp_path, "inbound", ["inbound", "smtp", "--port", "0", "--metrics-port", "0"], env)
        processes.append(inbound)
        api = serve.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        serve_metrics = serve.wait_for_line(r"metrics on (http://\S+)").group(1)
        post(f"{api}/api/v1/webhooks", {"url": f"http://127.0.0.1:{closed_port()}/hook",
                                        "event_types": ["consent.opt_out"]}, key)
        post(f"{api}/api/v1/contacts/batch", {"contacts": [{"external_id": "N1", "email": "n1@example.com"}]}, key)
        post(f"{api}/api/v1/contacts/N1/consent-events",
             {"action": "opt_out", "method": "verbal", "occurred_at": "2026-01-01T00:00:00Z"}, key)
        from_serve = wait_for_families(serve_metrics, {
            "consentry_import_rows", "consentry_ledger_events", "consentry_webhook_attempts",
            "consentry_campaigns_active",
        })

        inbound_metrics = inbound.wait_for_line(r"metrics on (http://\S+)").group(1)
        inbound_port = int(inbound.wait_for_line(r"listening on \S*?:(\d+)").group(1))
        with smtplib.SMTP("127.0.0.1", inbound_port, timeout=30) as client:
            client.ehlo()
            code, _message = client.mail("someone@example.net")
            assert code == 250
            code, _message = client.rcpt("nobody@unknown.example")
            assert code == 550  # not an address of ours: refused, and counted
        from_inbound = wait_for_families(inbound_metrics, {"consentry_inbound_mail"})
    finally:
        for process in processes:
            process.stop()
        capture.close()

    active = {tuple(sorted(s.labels.items())): s.value for s in from_serve["consentry_campaigns_active"]}
    assert active[(("channel", "email"), ("tenant", "acme-motors"))] == 1  # the incomplete one
    union = {name for scraped in (exported, from_serve, from_inbound) for name in scraped
             if name.startswith("consentry_")}
    assert documented() - union == set(), "documented but never recorded"
    assert union - documented() == set(), "recorded but not documented"
