from __future__ import annotations

import pytest


@pytest.fixture
def capture(tmp_path, monkeypatch):
    """Both capture servers on free loopback ports; the CLI is pointed at them."""
    from tests.capture import ThreadedCapture

    servers = ThreadedCapture(tmp_path / "capture")
    for name, value in servers.env.items():
        monkeypatch.setenv(name, value)
    # Transient failures retry fast in tests; the policy is the same, only quicker.
    monkeypatch.setenv("CONSENTRY_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("CONSENTRY_RETRY_BASE_S", "0.01")
    # A killed runner's claims lapse in 3 s instead of 30: the same mechanism, sooner.
    monkeypatch.setenv("CONSENTRY_CLAIM_TTL_S", "3")
    yield servers
    servers.close()
