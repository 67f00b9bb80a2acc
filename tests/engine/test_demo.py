"""`make demo` is the product's front door: it must keep working, at any hour."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_the_whole_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "engine.demo", "--contacts", "300", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "sending again sends nothing twice" in out
    assert "HTTP 200: unsubscribe recorded" in out
    assert "do_not_contact" in out  # the texted STOP, honoured for a salesperson's reply
    assert "The capture servers received" in out and " 0 emails" not in out
