"""Several `consentry worker` processes on one PostgreSQL and one redis-server (issue 14).

Everything is real: worker processes, `campaign send --backend arq`, PostgreSQL, Redis and
the SMS capture server, which keeps every text it accepts (a number texted twice shows up
twice). "Each recipient once" is counted at the capture server and compared with the
delivery rows (tests/engine/test_concurrency.py `assert_each_recipient_once`).

The rate test measures the rate the capture server saw (its own receive stamps): that is
an assertion about the shared limiter, not a timed assertion of how fast we are.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from engine.backends.shared_rate import SharedRateLimiter
from engine.send.errors import RateLimitUnavailable
from tests.cli import ok
from tests.engine.test_concurrency import (
    TTL_S,
    Processes,
    assert_each_recipient_once,
    connected_to,
    query,
    runner_env,
    wait_until,
)
from tests.servers import free_port

TENANT = """\
tenant: fleet
name: Fleet Motors
regime: opt_out
country: US
timezone: America/Chicago
postal_address: "1 Main St, Springfield, IL 62701, USA"
classes:
  marketing: {mode: opt_out}
"""

CAMPAIGN = """\
campaign: {code}
tenant: fleet
kind: bulk
channel: sms
class: marketing
template: short
sender: {{phone: "+15550001111"}}
{rate}"""

WORKERS = 3


@pytest.fixture
def capture(tmp_path, monkeypatch):
    """The capture servers, keeping every message in memory (20,000 and more)."""
    from tests.capture import ThreadedCapture

    servers = ThreadedCapture(tmp_path / "capture", sms={"memory_limit": 100_000})
    for name, value in servers.env.items():
        monkeypatch.setenv(name, value)
    yield servers
    servers.close()


def fleet(tmp_path: Path, db: str, contacts: int, rate: float | None = None) -> Path:
    """A tenant whose every contact gets the text (opt-out regime, no quiet hours, no
    opt-in wait), imported into `db`; returns the campaign file."""
    (tmp_path / "tenant.yaml").write_text(TENANT)
    with (tmp_path / "contacts.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "first_name", "phone"])
        for n in range(contacts):
            out.writerow([f"F{n:06d}", "Ava", f"+1312{2000000 + n:07d}"])
    (tmp_path / "templates" / "sms").mkdir(parents=True)
    (tmp_path / "templates" / "sms" / "short.txt").write_text("Hi {{ first_name }}, your car is ready.")
    campaign = tmp_path / "fleet.yaml"
    campaign.write_text(CAMPAIGN.format(code="fleet-notice", rate=f"rate: {{per_second: {rate}}}\n" if rate else ""))
    ok("db", "init", "--db", db)
    ok("tenant", "apply", tmp_path / "tenant.yaml", "--db", db)
    ok("contacts", "import", tmp_path / "contacts.csv", "--tenant", "fleet", "--db", db)
    return campaign


def start_workers(processes: Processes, n: int = WORKERS) -> list:  # noqa: ANN001
    """Worker processes; they start (seconds of imports) while the test imports its contacts."""
    return [processes.start(f"worker-{i}", "worker", "--metrics-port", "0") for i in range(1, n + 1)]


def wait_for_workers(workers: list) -> None:
    # Started means polling the queue: each printed its metrics address first.
    for worker in workers:
        wait_until(lambda w=worker: "metrics on" in w.output(), time.monotonic() + 60, f"{worker.name} to start")


def watch_senders(workers: list, port: int, until, deadline: float) -> set[str]:  # noqa: ANN001
    """Names of the workers seen with a connection to the SMS server (a batch on the wire)
    while `until()` is false."""
    seen: set[str] = set()
    while not until():
        assert time.monotonic() < deadline, "the campaign did not finish in time"
        seen |= {w.name for w in workers if w.popen.poll() is None and connected_to(w.pid, port)}
        time.sleep(0.1)
    return seen


def test_three_workers_send_twenty_thousand_texts_exactly_once(tmp_path, fresh_postgres_url, redis_url, capture):
    db = fresh_postgres_url
    with Processes(tmp_path / "logs", {**runner_env(db, capture, redis_url), "CONSENTRY_CLAIM_TTL_S": "30"}) as processes:
        workers = start_workers(processes)
        campaign = fleet(tmp_path, db, contacts=20_000)
        wait_for_workers(workers)
        send = processes.start("send-arq", "campaign", "send", campaign, "--backend", "arq", "--batch-size", "1000")
        seen = watch_senders(workers, capture.sms.port, lambda: send.popen.poll() is not None, time.monotonic() + 240)
        out = send.succeeded(time.monotonic())
        for worker in workers:
            assert worker.popen.poll() is None, f"{worker.name} died:\n{worker.output()[-3000:]}"
    received = assert_each_recipient_once(db, capture.sms)
    assert len(received) == 20_000, out
    assert seen == {w.name for w in workers}, f"only {sorted(seen)} sent"
    assert query(db, "select status from campaigns") == [("finished",)]


def test_a_worker_killed_mid_campaign_leaves_it_complete_and_single(tmp_path, fresh_postgres_url, redis_url, capture):
    db = fresh_postgres_url
    with Processes(tmp_path / "logs", runner_env(db, capture, redis_url)) as processes:
        workers = start_workers(processes)
        # Paced (shared by all workers) so the campaign lasts ~10 s: long enough to kill mid-way.
        campaign = fleet(tmp_path, db, contacts=3_000, rate=300)
        wait_for_workers(workers)
        send = processes.start("send-arq", "campaign", "send", campaign, "--backend", "arq", "--batch-size", "250")
        capture.call(capture.sms.wait_for(600, timeout=60))
        victim = wait_until(
            lambda: next((w for w in workers if connected_to(w.pid, capture.sms.port)), None),
            time.monotonic() + 30, "a worker sending a batch",
        )
        victim.popen.send_signal(signal.SIGKILL)
        assert victim.wait(time.monotonic() + 10) == -signal.SIGKILL
        at_kill = capture.run(getattr, capture.sms, "accepted")
        # The victim's job marks and claims lapse within the claim ttl each; the rest of the
        # campaign takes a few seconds more at this rate.
        send.succeeded(time.monotonic() + 10 * TTL_S + 30)
        survivors = [w for w in workers if w is not victim]
        for worker in survivors:
            assert worker.popen.poll() is None, f"{worker.name} died:\n{worker.output()[-3000:]}"
    received = assert_each_recipient_once(db, capture.sms)
    assert at_kill < len(received) == 3_000, "the campaign was over before the kill"
    # The victim held claims when it died, and a survivor took those rows over.
    assert query(db, "select count(*) from deliveries where attempts > 1")[0][0] > 0
    assert query(db, "select status from campaigns") == [("finished",)]


def test_three_workers_together_keep_the_senders_rate(tmp_path, fresh_postgres_url, redis_url, capture):
    """`rate.per_second: 200` is the sender's: three workers, each running several batch
    jobs at once (a limiter per job would allow 200/s each), send 200/s together."""
    db = fresh_postgres_url
    rate, contacts = 200, 2_400
    # Twelve jobs share 200/s, so each holds its claims for many seconds: the production ttl,
    # not the 3 s the takeover tests shorten it to, keeps a loaded host from lapsing them.
    env = {**runner_env(db, capture, redis_url), "CONSENTRY_CLAIM_TTL_S": "30"}
    with Processes(tmp_path / "logs", env) as processes:
        workers = start_workers(processes)
        campaign = fleet(tmp_path, db, contacts=contacts, rate=rate)
        wait_for_workers(workers)
        send = processes.start("send-arq", "campaign", "send", campaign, "--backend", "arq", "--batch-size", "200")
        seen = watch_senders(workers, capture.sms.port, lambda: send.popen.poll() is not None, time.monotonic() + 240)
        send.succeeded(time.monotonic())
    received = assert_each_recipient_once(db, capture.sms)
    assert len(received) == contacts
    assert len(seen) >= 2, f"only {sorted(seen)} sent: the limit was not shared"
    stamps = sorted(datetime.fromisoformat(m["received_at"].replace("Z", "+00:00")).timestamp() for m in capture.sms.messages)
    # Never over the limit, over the whole run.
    overall = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert overall <= 1.05 * rate, f"{overall:.1f} texts/s over the run for a limit of {rate}/s"
    # And at the limit while there is more to send than it allows. The first tenth is the
    # first batches starting (loading the campaign, gating, opening connections: work, not
    # pacing), the last tenth the final batch draining: the middle is where the limit binds.
    low, high = len(stamps) // 10, len(stamps) * 9 // 10
    paced = (high - low) / (stamps[high] - stamps[low])
    assert abs(paced - rate) <= 0.05 * rate, f"{paced:.1f} texts/s for a limit of {rate}/s"
    print(f"{len(stamps)} texts by {sorted(seen)}: {paced:.1f}/s paced, {overall:.1f}/s over the run (limit {rate}/s)")


def test_a_rate_limit_that_cannot_be_reached_sends_nothing_unpaced(tmp_path, sqlite_url, capture):
    """The shared limiter's Redis is down: the run stops before any transport call, and
    every recipient stays pending for the retried job (or a `resume`) to send."""
    from redis.asyncio import Redis

    from campaigns.definition import load_campaign
    from engine.clock import system_clock
    from engine.config import Settings
    from engine.db.session import make_engine
    from engine.send.pipeline import SendOptions
    from engine.send.ratelimit import sender_key
    from engine.send.runner import launch_campaign, run_range

    campaign = fleet(tmp_path, sqlite_url, contacts=50, rate=100)
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    async def send() -> None:
        engine = make_engine(sqlite_url)
        try:
            record, tenant = await launch_campaign(engine, load_campaign(str(campaign)), system_clock)
            pacer = SharedRateLimiter(nowhere, sender_key(record, tenant), 100)
            await run_range(engine, record, tenant, Settings.from_environ(), SendOptions(concurrency=4),
                            clock=system_clock, pacer=pacer)
        finally:
            await engine.dispose()
            await nowhere.aclose()

    with pytest.raises(RateLimitUnavailable, match="fleet:sms:\\+15550001111"):
        asyncio.run(send())
    assert capture.run(getattr, capture.sms, "accepted") == 0
    assert query(sqlite_url, "select state, count(*) from deliveries group by state") == [("pending", 50)]
