"""The arq backend: batch jobs on a real redis-server, run by a real `consentry worker`."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli import ok
from tests.engine.scenario import AT, build
from tests.engine.test_send import export


def test_campaign_sent_by_a_worker_process_equals_the_inline_result(tmp_path, sqlite_url, redis_url, capture, monkeypatch):
    db = sqlite_url
    files = build(tmp_path, db, enforce_review=False)
    env = {**os.environ, "CONSENTRY_DATABASE_URL": db, "CONSENTRY_REDIS_URL": redis_url, **capture.env}
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker", "--metrics-port", "0"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        monkeypatch.setenv("CONSENTRY_REDIS_URL", redis_url)
        result = ok("campaign", "send", files["email"], "--at", AT, "--backend", "arq", "--batch-size", "2", "--db", db)
        assert "finished" in result.out
        mails = capture.call(capture.smtp.wait_for(3, timeout=30))
        assert sorted(m["to"] for m in mails) == ["ava@example.com", "family@example.com", "mia@example.com"]
        rows = export(db, "spring-offer", tmp_path / "out.csv")
        assert rows["E6"]["reason"] == "duplicate_address" and rows["E1"]["state"] == "sent"
        # Enqueuing the same campaign again is harmless: the deterministic job ids and the
        # delivery ledger send nothing twice.
        ok("campaign", "send", files["email"], "--at", AT, "--backend", "arq", "--batch-size", "2", "--db", db)
        assert len(capture.smtp.messages) == 3
    finally:
        worker.terminate()
        worker.wait(30)
