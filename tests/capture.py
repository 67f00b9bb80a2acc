"""Our capture servers, run on a loop in a background thread.

The CLI under test calls `asyncio.run` itself, so the servers it talks to cannot share the
test's loop: they get their own, like any server would.

The SMS server can also hold texts (`HoldingSmsCapture`): a test that must keep a sender
busy at a chosen moment (a batch job running across a pause and a resume) shuts the door,
waits until the sender's requests are held, acts, then releases them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.capture import SmsCaptureServer, SmtpCaptureServer


class HoldingSmsCapture(SmsCaptureServer):
    """The SMS capture server with a door: after `hold()`, every text sent (a create
    request) waits, unanswered and not yet accepted, until `release()`; `held` counts the
    requests waiting. Open by default, so it is the plain server until a test shuts it.
    Call these on the server's loop (`ThreadedCapture.run` / `.call`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = 0
        self._door = asyncio.Event()
        self._door.set()
        self._held_changed = asyncio.Condition()

    def hold(self) -> None:
        self._door.clear()

    def release(self) -> None:
        self._door.set()

    async def wait_held(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` texts are held at the door."""
        async with asyncio.timeout(timeout), self._held_changed:
            await self._held_changed.wait_for(lambda: self.held >= count)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._door.is_set():
            async with self._held_changed:
                self.held += 1
                self._held_changed.notify_all()
            try:
                await self._door.wait()
            finally:
                self.held -= 1
        return await super()._create(request)

    def reset(self) -> None:
        super().reset()
        self.release()

    async def stop(self) -> None:
        self.release()  # a held request would otherwise keep the server from stopping
        await super().stop()


class ThreadedCapture:
    def __init__(self, store: Path, **options: Any) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="capture", daemon=True)
        self.thread.start()
        self.smtp = SmtpCaptureServer(port=0, store_dir=store, **options.get("smtp", {}))
        self.sms = HoldingSmsCapture(port=0, store_dir=store, **options.get("sms", {}))
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
