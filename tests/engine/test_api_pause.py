"""A campaign paused over the API sends nothing more until resumed, then each recipient once.

Real processes all the way: `consentry serve` (the API), `consentry campaign send` (an
inline runner started from the command line, as cron would), the SMS capture server, which
keeps every text it receives (no de-duplication). The pause is a POST to the served API;
the runner learns of it from the database on its next claim renewal (ttl / 6 = 0.5 s here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

from tests.cli import consentry, ok
from tests.engine.test_pause import CLAIM_TTL_S, _dealership, _query, _wait

CODE = "live-lead-followup"


def _post(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"", method="POST", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _serve(env: dict[str, str], log) -> tuple[subprocess.Popen, str]:  # noqa: ANN001
    # Its log to a file: a pipe nobody reads would fill up and stop the server mid-run.
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", "0", "--metrics-port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        found = re.search(r"listening on (http://\S+?)[,\s]", line)
        if found:
            return server, found.group(1)
        if not line and server.poll() is not None:
            break
    server.kill()
    raise AssertionError("consentry serve did not start")


def test_a_campaign_paused_over_the_api_sends_nothing_until_resumed(tmp_path, db_url, capture, monkeypatch):
    data = _dealership(tmp_path, db_url, contacts=1500)
    key = ok("keys", "create", "--tenant", data.tenant, "--role", "marketer", "--name", "pause test", "--db", db_url).out.strip()
    capture.run(setattr, capture.sms, "latency_ms", 20)
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db_url, "CONSENTRY_WEBHOOK_DISPATCH": "off",
           "CONSENTRY_STATUS_CALLBACKS": "off"}
    log = (tmp_path / "serve.log").open("w")
    server, base = _serve(env, log)
    runner = None
    try:
        runner = subprocess.Popen(
            [sys.executable, "-m", "engine", "campaign", "send", str(data.sms_yaml), "--concurrency", "16", "--batch-size", "200"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        capture.call(capture.sms.wait_for(100, timeout=120))
        status, body = _post(f"{base}/api/v1/campaigns/{CODE}/pause", key)
        assert (status, body["status"]) == (200, "paused"), body
        paused_at = time.monotonic()
        # The runner stops within one renewal (0.5 s) and exits: code 3, a person must act.
        assert runner.wait(CLAIM_TTL_S * 2) == 3, runner.stderr.read() if runner.stderr else ""
        stopped_within = time.monotonic() - paused_at
        settled = len(capture.sms.messages)
        # Flat for more than two renewal periods (here: six, the whole claim ttl).
        time.sleep(CLAIM_TTL_S)
        assert len(capture.sms.messages) == settled
        # Nothing is held any more: what the runner had claimed went back to pending.
        assert _query(db_url, "select count(*) from deliveries where state = 'sending'") == [(0,)]
        (pending,), = _query(db_url, "select count(*) from deliveries where state = 'pending'")
        assert pending > 0, "the pause came too late to leave anything pending"
        assert _query(db_url, "select status from campaigns where code = :code", code=CODE) == [("paused",)]

        # A `campaign send` run again does not lift the pause: it sends nothing. (In-process,
        # tests/cli.py: the same command, exit code and stderr, without an interpreter start-up.)
        for name, value in env.items():
            if name.startswith("CONSENTRY_"):
                monkeypatch.setenv(name, value)
        again = consentry("campaign", "send", data.sms_yaml)
        assert again.code == 3, again.err
        assert "paused" in again.err
        assert len(capture.sms.messages) == settled

        status, body = _post(f"{base}/api/v1/campaigns/{CODE}/resume", key)
        assert (status, body["status"], body["backend"]) == (202, "running", "inline"), body
        try:
            _wait(lambda: _query(db_url, "select status from campaigns where code = :code", code=CODE) == [("finished",)],
                  180, "the resumed campaign to finish")
        except AssertionError:
            raise AssertionError((tmp_path / "serve.log").read_text()[-5000:]) from None
    finally:
        if runner is not None:
            runner.kill()
        server.terminate()
        server.wait(30)
        log.close()
    received = Counter(message["to"] for message in capture.sms.messages)
    assert {number: n for number, n in received.items() if n > 1} == {}
    sent = Counter(address for (address,) in _query(db_url, "select address from deliveries where state = 'sent'"))
    assert sent == received
    assert len(received) > settled
    assert _query(db_url, "select count(*) from deliveries where state in ('pending', 'sending')") == [(0,)]
    print(f"paused after {settled} texts; the runner stopped {stopped_within:.2f} s after the pause; "
          f"{len(received)} texts in all, each number once")


def _post_json(url: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _arq_dealership(tmp_path, db, capture, redis_url, *, contacts, rate, name):
    """A dealership whose SMS campaign sends at `rate`, a manager's API key named `name`,
    and the environment of its runners on arq (CONSENTRY_REDIS_URL set), webhooks off."""
    from tests.engine.test_concurrency import dealership, runner_env

    data = dealership(tmp_path, db, contacts=contacts, seed=21, rate=rate)
    key = ok("keys", "create", "--tenant", data.tenant, "--role", "manager", "--name", name, "--db", db).out.strip()
    return data, key, {**runner_env(db, capture, redis_url), "CONSENTRY_WEBHOOK_DISPATCH": "off"}


def test_arq_workers_stop_on_a_pause_over_the_api_and_resume_sends_each_once(tmp_path, fresh_postgres_url, redis_url, capture):
    """Created, launched, paused and resumed over the API; sent by two `consentry worker`s."""
    import yaml

    from tests.engine.test_concurrency import Processes, assert_each_recipient_once

    db = fresh_postgres_url
    # ~230 texts at 20/s: paused after 30, a dozen seconds of campaign are left to pause.
    data, key, env = _arq_dealership(tmp_path, db, capture, redis_url, contacts=600, rate=20, name="arq pause")
    capture.run(setattr, capture.sms, "latency_ms", 10)
    assert "CONSENTRY_LAUNCH_BACKEND" not in env  # arq because CONSENTRY_REDIS_URL is set
    log = (tmp_path / "serve.log").open("w")
    with Processes(tmp_path / "logs", env) as processes:
        # The workers start (seconds of imports) while serve does: they wait on Redis for jobs.
        workers = [processes.start(f"worker-{n}", "worker", "--metrics-port", "0") for n in (1, 2)]
        server, base = _serve(env, log)
        try:
            definition = yaml.safe_load(data.sms_yaml.read_text())
            assert _post_json(f"{base}/api/v1/campaigns", key, definition)[0] == 201
            status, body = _post(f"{base}/api/v1/campaigns/{CODE}/launch", key)
            assert (status, body["backend"]) == (202, "arq"), body
            capture.call(capture.sms.wait_for(30, timeout=120))
            assert _post(f"{base}/api/v1/campaigns/{CODE}/pause", key)[0] == 200
            # Within one renewal (0.5 s) every worker stops; give it two, then watch six more.
            time.sleep(2 * CLAIM_TTL_S / 6)
            settled = len(capture.sms.messages)
            time.sleep(CLAIM_TTL_S)
            assert len(capture.sms.messages) == settled
            _wait(lambda: _query(db, "select count(*) from deliveries where state = 'sending'") == [(0,)],
                  CLAIM_TTL_S, "the workers to hand back what they held")
            assert _query(db, "select status from campaigns where code = :code", code=CODE) == [("paused",)]
            status, body = _post(f"{base}/api/v1/campaigns/{CODE}/resume", key)
            assert status == 202, body
            _wait(lambda: _query(db, "select status from campaigns where code = :code", code=CODE) == [("finished",)],
                  180, "the resumed campaign to finish")
            for worker in workers:
                assert worker.popen.poll() is None, worker.output()[-3000:]
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    received = assert_each_recipient_once(db, capture.sms)
    assert len(received) > settled
    print(f"arq: paused after {settled} texts, flat for {CLAIM_TTL_S} s; {len(received)} texts in all, each once")


def test_arq_a_resume_while_the_paused_runs_job_still_runs_sends_the_rest_each_once(
    tmp_path, fresh_postgres_url, redis_url, capture
):
    """The race, forced: the paused run's batch job is still running when the resume comes.

    A `campaign send --backend arq` (as cron would start it) enqueues the campaign's one
    batch; the worker's job sends its first texts, which the capture server holds. Then, in
    this order, each step waited for in what a person would read (logs, the API, the sink):
    a pause over the API; the job sees it (its log line); a resume over the API, whose run
    finds the batch's job (same deterministic id) still running and waits for it (the serve
    log says so); the held texts are released; the job ends halted with most of its range
    unsent. That batch must run again, and the campaign finish, each number texted once.
    """
    from tests.engine.test_concurrency import Processes, assert_each_recipient_once

    db = fresh_postgres_url
    # One batch (fewer contacts than the batch size, the same for the CLI and serve, so
    # both name the same job); rate high enough that the rest takes about a second.
    data, key, env = _arq_dealership(tmp_path, db, capture, redis_url, contacts=200, rate=100, name="arq race")
    concurrency = 4
    capture.run(capture.sms.hold)
    log = (tmp_path / "serve.log").open("w")
    with Processes(tmp_path / "logs", env) as processes:
        worker = processes.start("worker", "worker", "--metrics-port", "0")
        server, base = _serve(env, log)
        try:
            launcher = processes.start("send-arq", "campaign", "send", data.sms_yaml, "--backend", "arq",
                                       "--concurrency", concurrency)
            # The job is running: every one of its sending slots waits on the capture server.
            capture.call(capture.sms.wait_held(concurrency, timeout=120))
            assert capture.sms.messages == []
            status, body = _post(f"{base}/api/v1/campaigns/{CODE}/pause", key)
            assert (status, body["status"]) == (200, "paused"), body
            # The job reads the pause at its next claim renewal (ttl / 6) and dispatches no more.
            (campaign_id,), = _query(db, "select id from campaigns where code = :code", code=CODE)
            _wait(lambda: f"campaign {campaign_id} is paused: runner" in worker.output(), 30,
                  "the worker's job to see the pause")
            status, body = _post(f"{base}/api/v1/campaigns/{CODE}/resume", key)
            assert (status, body["backend"], body["started"]) == (202, "arq", True), body
            job = f"consentry:campaign:{campaign_id}:after:0"
            _wait(lambda: f"{job} is queued or running already: waiting for it" in (tmp_path / "serve.log").read_text(),
                  30, "the resumed run to find the paused run's job still running")
            assert capture.sms.messages == []
            capture.run(capture.sms.release)

            # The paused run's job ends halted, with all but its held texts unsent; both
            # runs waiting on it (the launcher's and the resume's) see it and finish.
            output = launcher.succeeded(time.monotonic() + 120)
            assert "finished" in output, output[-3000:]
            ended = f"campaign {data.tenant}/{CODE}: "
            _wait(lambda: ended in (tmp_path / "serve.log").read_text(), 60, "the resumed run to end")
            serve_log = (tmp_path / "serve.log").read_text()
            assert f"{ended}finished" in serve_log, serve_log[-5000:]
            assert worker.popen.poll() is None, worker.output()[-3000:]
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    assert _query(db, "select status from campaigns where code = :code", code=CODE) == [("finished",)]
    # Every number once at the sink (which keeps duplicates), the ledger agreeing, nothing pending.
    received = assert_each_recipient_once(db, capture.sms)
    assert len(received) > concurrency, "the batch was not run again after its job ended halted"
    print(f"arq race: {concurrency} texts held across the pause and the resume; {len(received)} texts in all, each once")
