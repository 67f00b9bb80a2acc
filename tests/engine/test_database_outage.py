"""A database outage in the middle of `campaign send`, on real PostgreSQL: the run stops
with the command that finishes it, nobody is marked failed, and `resume` after the
database is back sends every recipient the rest of the way, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.cli import ok
from tests.engine.scenario import TENANT

REPO = Path(__file__).resolve().parents[2]
RECIPIENTS = 60
CAMPAIGN = """\
campaign: outage-offer
tenant: acme-motors
kind: bulk
channel: email
class: marketing
template: spring_offer
subject: "Your spring service offer"
sender: {email: service@acme.example, name: Acme Service}
"""


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {"tenant": tmp_path / "tenant.yaml", "contacts": tmp_path / "contacts.csv", "campaign": tmp_path / "campaign.yaml"}
    files["tenant"].write_text(
        TENANT.format(tenant="acme-motors", enforce="false").replace('quiet_hours: {start: "21:00", end: "08:00"}', "quiet_hours: null")
    )
    rows = [f"K{n},Kim,Lee{n},kim{n}@example.com,,America/Los_Angeles,US,,Website,," for n in range(RECIPIENTS)]
    files["contacts"].write_text(
        "external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at\n" + "\n".join(rows) + "\n"
    )
    files["campaign"].write_text(CAMPAIGN)
    return files


def _states(url: str) -> dict[str, int]:
    status = ok("campaign", "status", "outage-offer", "--tenant", "acme-motors", "--json", "--db", url).out
    return {state: n for state, n in json.loads(status)["states"].items() if n}


def test_a_database_outage_mid_send_stops_with_the_resume_command_and_resume_finishes(
    tmp_path, capture, postgres_server, fresh_postgres_url
):
    url = fresh_postgres_url
    database = url.rsplit("/", 1)[1]
    files = _files(tmp_path)
    ok("db", "init", "--db", url)
    ok("tenant", "apply", files["tenant"], "--db", url)
    ok("contacts", "import", files["contacts"], "--tenant", "acme-motors", "--db", url)
    capture.run(setattr, capture.smtp, "latency_ms", 40)

    env = {**os.environ, "CONSENTRY_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    send = subprocess.Popen(
        [sys.executable, "-m", "engine", "campaign", "send", str(files["campaign"]), "--concurrency", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        capture.call(capture.smtp.wait_for(5, timeout=30))
        # The outage: no new connections, and every open one cut.
        postgres_server.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        postgres_server.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        started = time.monotonic()
        out, err = send.communicate(timeout=60)
        stopped_after = time.monotonic() - started
        at_the_sink = [m["to"] for m in capture.smtp.messages]
    finally:
        if send.poll() is None:
            send.kill()
            send.wait()
        postgres_server.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    assert send.returncode == 1, (out, err)
    assert stopped_after < 10, stopped_after
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "campaign outage-offer stopped: the database is unreachable" in error
    assert error.endswith("run `consentry campaign resume outage-offer --tenant acme-motors`")
    assert "Traceback" not in err
    states = _states(url)
    # Nobody is failed for the database's fault: the rest are pending, or still claimed by
    # the stopped runner (`sending`) until its claims lapse and `resume` takes them over.
    assert set(states) <= {"sent", "sending", "pending"} and sum(states.values()) == RECIPIENTS, states
    assert states.get("sent", 0) < RECIPIENTS and len(at_the_sink) < RECIPIENTS

    capture.run(setattr, capture.smtp, "latency_ms", 0)
    resumed = ok("campaign", "resume", "outage-offer", "--tenant", "acme-motors", "--db", url)
    assert "finished" in resumed.out, resumed.out
    assert _states(url) == {"sent": RECIPIENTS}
    stored = [m["to"] for m in capture.smtp.messages]
    assert sorted(stored) == sorted(f"kim{n}@example.com" for n in range(RECIPIENTS))  # each once
    # A message on the wire when the database went away may be handed over again, with
    # its Message-ID (SMTP has no idempotency key): at most one per worker.
    assert capture.smtp.duplicates <= 2
