"""The per-batch JSON log (engine/send/batch_log.py): one line per batch, counts final for
the runner, also when the run stops with recipients left pending."""

from __future__ import annotations

import json
import socket

from tests.cli import consentry
from tests.engine.scenario import AT, build
from tests.engine.test_send import sql


def test_a_run_stopped_by_a_relay_that_is_down_logs_what_it_left_pending(tmp_path, sqlite_url, monkeypatch):
    db = sqlite_url
    files = build(tmp_path, db, enforce_review=False)
    log = tmp_path / "batches.jsonl"
    monkeypatch.setenv("CONSENTRY_BATCH_LOG", str(log))
    monkeypatch.setenv("CONSENTRY_RETRY_ATTEMPTS", "1")
    with socket.socket() as probe:  # a port nothing listens on: the relay is down
        probe.bind(("127.0.0.1", 0))
        down = probe.getsockname()[1]
    result = consentry("campaign", "send", files["email"], "--at", AT, "--batch-size", "4", "--db", db,
                       "--smtp-url", f"smtp://127.0.0.1:{down}")
    assert result.code in (1, 3), result.err
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(line["batch"] for line in lines) == [1, 2, 3]  # 9 recipients, 4 a batch
    assert all(line["campaign"] == "spring-offer" and line["channel"] == "email" for line in lines)
    assert sum(line["recipients"] for line in lines) == 9
    assert sum(line["send"] for line in lines) == 3
    assert sum(line["suppress"] for line in lines) == 6
    assert sum(line["sent"] for line in lines) == 0
    [(pending,)] = sql(db, "select count(*) from deliveries where state = 'pending'")
    assert pending == 3
    assert sum(line["pending"] + line["withdrawn"] for line in lines) == pending
