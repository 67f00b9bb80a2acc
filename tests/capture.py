"""Our capture servers, run on a loop in a background thread.

The CLI under test calls `asyncio.run` itself, so the servers it talks to cannot share the
test's loop: they get their own, like any server would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from engine.capture import SmsCaptureServer, SmtpCaptureServer


class ThreadedCapture:
    def __init__(self, store: Path, **options: Any) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="capture", daemon=True)
        self.thread.start()
        self.smtp = SmtpCaptureServer(port=0, store_dir=store, **options.get("smtp", {}))
        self.sms = SmsCaptureServer(port=0, store_dir=store, **options.get("sms", {}))
        self.call(self.smtp.start())
        self.call(self.sms.start())

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, function, *args: Any) -> Any:  # noqa: ANN001
        """Run a plain function on the servers' loop (to change their settings safely)."""
        async def _call() -> Any:
            return function(*args)

        return self.call(_call())

    @property
    def env(self) -> dict[str, str]:
        return {
            "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}",
            "CONSENTRY_TWILIO_URL": f"http://127.0.0.1:{self.sms.port}",
        }

    def close(self) -> None:
        try:
            self.call(self.smtp.stop())
            self.call(self.sms.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
