"""Status callbacks go to CONSENTRY_CALLBACK_URL when the SMS provider reaches `serve` by
another name than recipients do (compose: the capture server posts to `consentry-api`),
and `serve` verifies their signature over that URL.

Here the links' public URL is a domain nothing serves, and the callback URL is where
`serve` really listens: every callback the capture server makes reaches it and is accepted
(204), which it is only when its signature verifies (403 otherwise).
"""

from __future__ import annotations

import os

from tests.capture import ThreadedCapture
from tests.engine.scenario import AT, build
from tests.infra.processes import Consentry
from tests.servers import free_port

AUTH_TOKEN = "callback-test-auth-token-0123456789"


def test_status_callbacks_reach_serve_at_the_callback_url(tmp_path, sqlite_url):
    db = sqlite_url
    files = build(tmp_path, db, enforce_review=False)
    capture = ThreadedCapture(tmp_path / "capture", sms={"auth_token": AUTH_TOKEN})
    env = {**os.environ, **capture.env, "CONSENTRY_DATABASE_URL": db, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "CONSENTRY_SECRET": "callback-test-secret-0123456789", "CONSENTRY_PUBLIC_URL": "https://links.acme.example",
           "CONSENTRY_BATCH_LOG": "off"}
    # serve must know the callback URL too: it verifies the signature over it.
    port = free_port()
    api = env["CONSENTRY_CALLBACK_URL"] = f"http://127.0.0.1:{port}"
    serve = Consentry(tmp_path, "serve", ["serve", "--port", str(port), "--metrics-port", "0"], env)
    try:
        serve.wait_for_line(r"listening on http://")
        send = Consentry(tmp_path, "send", ["campaign", "send", str(files["sms"]), "--at", AT], env)
        assert send.wait(120) == 0, send.text()
        texts = len(capture.sms.messages)
        assert texts >= 2
        # Each text reports `sent`, then `delivered`.
        callbacks = capture.call(capture.sms.wait_for_callbacks(2 * texts, timeout=60))
        assert {c["url"] for c in callbacks} == {f"{api}/webhooks/twilio/acme-motors/status"}
        assert [c.get("http_status") for c in callbacks] == [204] * len(callbacks), callbacks
    finally:
        serve.stop()
        capture.close()
