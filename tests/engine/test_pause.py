"""A sender frozen past its claims (SIGSTOP, a VM or container pause) sends nobody twice.

The story of the bug this guards against: a paused runner outlived its lease, a second runner
took the campaign over, and when the first woke up it went on sending the messages it had
queued: thousands of duplicates, while the database said every recipient was sent once.

Here: start a send, freeze it with SIGSTOP once messages flow, wait until its claims have
lapsed in the database (the documented reclaim time), start a second runner, wake the first
with SIGCONT, and count at the capture server, which keeps every text it receives (no
de-duplication): every recipient exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import text

from engine.clock import system_clock
from engine.db.session import make_engine
from tests.cli import ok

CLAIM_TTL_S = 3  # the capture fixture's CONSENTRY_CLAIM_TTL_S


def _query(db: str, query: str, **params):  # noqa: ANN202
    async def _run():  # noqa: ANN202
        engine = make_engine(db)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(query), params)).all()
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def _wait(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _dealership(tmp_path, db: str, contacts: int):  # noqa: ANN001, ANN202
    from datetime import UTC, datetime

    from engine.demo.sample_data import write_dealership

    data = write_dealership(tmp_path / "d", contacts=contacts, seed=5, now=datetime.fromtimestamp(system_clock() / 1e6, UTC))
    # Sent at now: without quiet hours, what goes out does not depend on the hour of the run.
    policy = data.tenant_yaml.read_text()
    assert 'quiet_hours: {start: "21:00", end: "08:00"}' in policy
    data.tenant_yaml.write_text(policy.replace('quiet_hours: {start: "21:00", end: "08:00"}', "quiet_hours: null"))
    ok("db", "init", "--db", db)
    ok("tenant", "apply", data.tenant_yaml, "--db", db)
    ok("contacts", "import", data.contacts_csv, "--tenant", data.tenant, "--db", db)
    ok("consent", "import", data.events_csv, "--tenant", data.tenant, "--db", db)
    return data


def _freeze_take_over_wake(db: str, campaign_file, code: str, tenant: str, server, capture) -> tuple[subprocess.Popen, subprocess.Popen]:  # noqa: ANN001
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db}
    command = [sys.executable, "-m", "engine"]
    first = subprocess.Popen([*command, "campaign", "send", str(campaign_file), "--concurrency", "16", "--batch-size", "200"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = None
    try:
        capture.call(server.wait_for(100, timeout=120))
        first.send_signal(signal.SIGSTOP)
        # The first runner's claims lapse CLAIM_TTL_S after its last renewal. (Requests it had
        # already written before the freeze still complete at the server meanwhile.)
        _wait(lambda: _query(db, "select count(*) from deliveries where state = 'sending' and claim_until_us >= :now",
                             now=system_clock()) == [(0,)], CLAIM_TTL_S * 5, "the frozen runner's claims to lapse")
        frozen_at = capture.run(getattr, server, "accepted")
        second = subprocess.Popen([*command, "campaign", "resume", code, "--tenant", tenant], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Let the second runner take over and send some more before waking the first. It may
        # be unable to: a runner frozen inside a write transaction holds SQLite's single write
        # lock until it wakes (PostgreSQL ends its session instead, see
        # engine/db/session.py). Either way the first must send nothing once awake.
        with contextlib.suppress(TimeoutError):
            capture.call(server.wait_for(frozen_at + 100, timeout=10))
        first.send_signal(signal.SIGCONT)
        assert second.wait(180) == 0, second.stderr.read().decode()
        first.wait(60)
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        if second is not None:
            second.kill()
    return first, second


def test_a_frozen_texting_runner_sends_nobody_twice(tmp_path, db_url, capture):
    data = _dealership(tmp_path, db_url, contacts=1500)
    capture.run(setattr, capture.sms, "latency_ms", 20)
    first, _second = _freeze_take_over_wake(db_url, data.sms_yaml, "live-lead-followup", data.tenant, capture.sms, capture)
    # The woken runner noticed its claims were gone (or, on PostgreSQL, that the server ended
    # its frozen session) and stopped.
    stderr = first.stderr.read().decode()
    assert first.returncode in (0, 1), stderr
    received = Counter(message["to"] for message in capture.sms.messages)
    twice = {number: n for number, n in received.items() if n > 1}
    assert twice == {}, (
        f"{len(twice)} numbers got more than one text",
        [(m["to"], m.get("received_at"), m.get("sid")) for m in capture.sms.messages if m["to"] in twice],
        stderr[-3000:],
        _query(db_url, "select * from deliveries where address in (" + ",".join(f"'{n}'" for n in twice) + ")"),
    )
    sent = Counter(address for (address,) in _query(db_url, "select address from deliveries where state = 'sent'"))
    assert sent == received
    assert _query(db_url, "select count(*) from deliveries where state in ('pending', 'sending')") == [(0,)]


def test_a_frozen_mailing_runner_resends_at_most_what_was_on_the_wire(tmp_path, sqlite_url, capture):
    """Email has a floor: SMTP has no idempotency key, so a message the relay accepted just
    before the freeze, whose reply the frozen runner never recorded, is sent again (same
    Message-ID). Everything else (queued, or stopped at the guard before DATA) is not."""
    data = _dealership(tmp_path, sqlite_url, contacts=1500)
    capture.run(setattr, capture.smtp, "latency_ms", 5)
    _freeze_take_over_wake(sqlite_url, data.edm_yaml, "spring-service-offer", data.tenant, capture.smtp, capture)
    received = Counter(message["to"] for message in capture.smtp.messages)
    sent = Counter(address for (address,) in _query(sqlite_url, "select address from deliveries where state = 'sent'"))
    assert set(sent) == set(received)
    # The capture server stores a Message-ID once and counts every repeat: the repeats are the
    # re-sent in-doubt messages, at most one per worker (concurrency 16).
    assert capture.smtp.duplicates <= 16
    assert _query(sqlite_url, "select count(*) from deliveries where state in ('pending', 'sending')") == [(0,)]
