"""A webhook receiver, as a DMS would write one: its own process, on a loopback port.

    python -m tests.webhooks.receiver --secret whsec_... --out events.jsonl [--port 0] [--delay-ms 0]

It verifies each POST to /hook with the Standard Webhooks reference library (the
signature over id, timestamp and body with the endpoint's secret; a timestamp more than
five minutes off its own clock is refused), checks that the body's id is the
`webhook-id`, appends the event as one JSON line to `--out` and answers 204. A request
that does not verify gets 400 and is not written. The first line on standard output is
`listening on http://127.0.0.1:PORT`.

The event is written before the answer: killed in between, it is written again when the
sender retries (at least once), which is what a receiver must expect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def build(secret: str, out: str, delay_s: float) -> web.Application:
    verifier = Webhook(secret)

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            event = verifier.verify(raw, dict(request.headers))
        except (WebhookVerificationError, ValueError) as exc:
            print(f"refused: {exc}", file=sys.stderr, flush=True)
            return web.Response(status=400, text=f"signature: {exc}")
        if event.get("id") != request.headers.get("webhook-id"):
            return web.Response(status=400, text="body id is not webhook-id")
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    return app


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    runner = web.AppRunner(build(args.secret, args.out, args.delay_ms / 1000), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
