"""A real Prometheus (Debian's `prometheus`) scraping real workers reports what the delivery
rows say: every send, every suppression, by reason, nothing lost and nothing doubled.

Two `consentry worker` processes on PostgreSQL and redis-server send a campaign queued by
`campaign send --backend arq`; Prometheus scrapes each worker's /metrics every second.
As soon as the campaign is done one worker is stopped (SIGTERM): it waits for a last
scrape (`--metrics-linger`) before exiting, so none of its counts is lost. One test:
Prometheus takes seconds to start.
"""

from __future__ import annotations

import asyncio
import os
import time

from sqlalchemy import text

from engine.db.session import make_engine
from tests.capture import ThreadedCapture
from tests.cli import ok
from tests.engine.scenario import AT, TENANT
from tests.infra.processes import Consentry
from tests.servers import PrometheusServer, free_port

CONTACTS = 240
OPTED_OUT = {n for n in range(CONTACTS) if n % 12 == 0}  # 20 opted out of marketing

CAMPAIGN = """\
campaign: all-hands-offer
tenant: acme-motors
kind: bulk
channel: email
class: marketing
template: spring_offer
subject: "Your spring service offer"
sender: {email: service@acme.example, name: Acme Service}
"""


def write_dealership(directory) -> dict:  # noqa: ANN001
    files = {"tenant": directory / "tenant.yaml", "contacts": directory / "contacts.csv",
             "campaign": directory / "campaign.yaml"}
    files["tenant"].write_text(TENANT.format(tenant="acme-motors", enforce="false"))
    rows = ["external_id,first_name,email,timezone,country,opted_out"]
    rows += [f"C{n},Pat{n},pat{n}@example.com,America/Los_Angeles,US,{'true' if n in OPTED_OUT else ''}"
             for n in range(CONTACTS)]
    files["contacts"].write_text("\n".join(rows) + "\n")
    files["campaign"].write_text(CAMPAIGN)
    return files


def rows_by_outcome(url: str) -> dict[tuple[str, str], int]:
    async def count() -> dict[tuple[str, str], int]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(
                    "select decision, coalesce(reason, 'none'), count(*) from deliveries group by 1, 2"))
                return {(decision, reason): n for decision, reason, n in result.all()}
        finally:
            await engine.dispose()

    return asyncio.run(count())


def value(prometheus: PrometheusServer, promql: str) -> float:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else 0.0


def settled(prometheus: PrometheusServer, promql: str, expected: float, timeout_s: float = 60) -> float:
    """The query's value once it reached `expected` (or what it was when time ran out)."""
    deadline = time.monotonic() + timeout_s
    while (found := value(prometheus, promql)) != expected and time.monotonic() < deadline:
        time.sleep(0.25)
    return found


def test_prometheus_scraping_the_workers_counts_what_the_delivery_rows_say(tmp_path, fresh_postgres_url, redis_url):
    db = fresh_postgres_url
    files = write_dealership(tmp_path)
    ok("db", "init", "--db", db)
    ok("tenant", "apply", files["tenant"], "--db", db)
    ok("contacts", "import", files["contacts"], "--tenant", "acme-motors", "--db", db)
    capture = ThreadedCapture(tmp_path / "capture")
    env = {**os.environ, **capture.env, "CONSENTRY_DATABASE_URL": db, "CONSENTRY_REDIS_URL": redis_url,
           "CONSENTRY_BATCH_LOG": "off"}
    ports = [free_port(), free_port()]
    workers = [
        Consentry(tmp_path, f"worker-{n}", ["worker", "--metrics-port", str(port), "--metrics-linger", "10"], env)
        for n, port in enumerate(ports)
    ]
    try:
        # Prometheus starts while the workers do (their ports are fixed above): a target not
        # listening yet is just `up == 0` until it is.
        prometheus = PrometheusServer(tmp_path / "prometheus", {"consentry-worker": [f"127.0.0.1:{p}" for p in ports]},
                                      scrape_interval_s=1.0).start()
        try:
            for worker in workers:
                worker.wait_for_line(r"metrics on http://")
            # Both targets up and scraped once, before anything is sent: the counters' first
            # samples come from the workers' own series, not from a campaign half sent.
            assert settled(prometheus, 'count(up{job="consentry-worker"} == 1)', 2) == 2
            send = Consentry(tmp_path, "send", ["campaign", "send", str(files["campaign"]), "--at", AT,
                                                "--backend", "arq", "--batch-size", "40"], env)
            assert send.wait(300) == 0, send.text()
            # Every batch is done; stop one worker at once, before Prometheus need have
            # scraped its last batch: it waits for a last scrape (--metrics-linger) first.
            workers[0].stop()
            assert workers[0].process.returncode == 0, workers[0].text()
            assert "no scrape" not in workers[0].text()

            rows = rows_by_outcome(db)
            sent = rows.get(("send", "none"), 0)
            assert sent == CONTACTS - len(OPTED_OUT) and rows[("suppress", "opted_out")] == len(OPTED_OUT)
            assert len(capture.smtp.messages) == sent
            # A stopped target's series go stale at its next failed scrape, so an instant
            # query no longer sees them; a range selector still holds their last samples.
            sends = 'sum(last_over_time(consentry_deliveries_total{job="consentry-worker", state="sent"}[10m]))'
            assert settled(prometheus, sends, sent) == sent
            for (decision, reason), n in rows.items():
                promql = f'sum(last_over_time(consentry_decisions_total{{decision="{decision}", reason="{reason}"}}[10m]))'
                assert settled(prometheus, promql, n) == n, promql
            # Each worker exported its own share (which one ran which batch is up to them).
            per_worker = prometheus.query(
                'sum by (instance) (last_over_time(consentry_deliveries_total{state="sent"}[10m]))')
            assert per_worker and {r["metric"]["instance"] for r in per_worker} <= {f"127.0.0.1:{p}" for p in ports}
        finally:
            # The other worker also waits for a last scrape before it exits (--metrics-linger):
            # stopped while Prometheus still scrapes, it exits at the next scrape (a second)
            # instead of sitting out the whole linger against a stopped Prometheus.
            for worker in workers:
                worker.stop()
            prometheus.stop()
    finally:
        for worker in workers:
            worker.stop()
        capture.close()
