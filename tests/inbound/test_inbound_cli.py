"""`consentry inbound smtp` as an operator runs it: a process that listens, answers, stops."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys

from tests.cli import consentry
from tests.inbound.files import build
from tests.inbound.mail import person_mail


def test_the_command_listens_records_and_stops_on_sigterm(tmp_path, sqlite_url):
    build(tmp_path, sqlite_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "inbound", "smtp", "--port", "0", "--db", sqlite_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("mta.example")
            client.mail("ava@example.com")
            assert client.rcpt("someone@acme-motors.example")[0] == 550
            assert client.rcpt("unsubscribe@acme-motors.example")[0] == 250
            code, _ = client.data(person_mail("ava@example.com", "unsubscribe@acme-motors.example", "unsubscribe"))
            assert code == 250
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "unsubscribe for tenant acme-motors" in err  # the log line: never the address


def test_off_loopback_with_the_default_secret_it_refuses_to_start(monkeypatch):
    monkeypatch.delenv("CONSENTRY_SECRET", raising=False)
    result = consentry("inbound", "smtp", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 2 and "CONSENTRY_SECRET" in result.err
