"""`make demo`: the whole job on the embedded defaults, narrated.

Starts the built-in SMTP and Twilio-compatible capture servers on loopback, generates a
dealership (policy, 10,000 contacts, their consent history), imports it into a SQLite
file, checks and sends an eDM campaign and a live-lead SMS campaign through the real
`consentry` commands, and shows what was sent, what was held back and why.
Everything gates at the moment it runs, as in production, and the generated history is dated
relative to the moment the demo starts: texts to recipients inside their quiet hours are
deferred, so the SMS part of the story depends on the hour you run it.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from engine.capture import SmsCaptureServer, SmtpCaptureServer
from engine.clock import system_clock
from engine.demo.sample_data import write_dealership
from engine.timeutil import from_us


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


async def _run(step: str, *args: str, env: dict[str, str], expect: int = 0) -> None:
    print(f"\n\033[1m$ consentry {' '.join(args)}\033[0m   # {step}", flush=True)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", *args, env=env)
    code = await process.wait()
    print(f"   ({time.perf_counter() - started:.1f} s, exit {code})", flush=True)
    if code != expect:
        raise SystemExit(f"demo step failed: consentry {' '.join(args)}")


async def _start_api(port: int, metrics_port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    """`consentry serve`: unsubscribe links, preference centre, Twilio webhooks; /metrics
    on a port of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "--port", str(port), "--metrics-port", str(metrics_port),
        env=env, stdout=asyncio.subprocess.DEVNULL,
    )
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            if process.returncode is not None:
                break
            await asyncio.sleep(0.2)
    raise SystemExit("demo: `consentry serve` did not start")


def _first(path: Path, **match: str) -> dict[str, str] | None:
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if all(row[k] == v for k, v in match.items()):
                return row
    return None


async def _revocations(workdir: Path, store: Path, data, env: dict[str, str], api: str, sms_port: int) -> None:  # noqa: ANN001
    """Every revocation is honoured: a one-click unsubscribe and a texted STOP, live."""
    mail = next((m for m in _records(store) if m["channel"] == "email" and any(n.lower() == "list-unsubscribe" for n, _v in m["headers"])), None)
    if mail is None:
        raise SystemExit("demo: no bulk email was captured")
    header = next(v for n, v in mail["headers"] if n.lower() == "list-unsubscribe")
    one_click = next(part.strip(" <>") for part in header.split(",") if "/u/" in part)
    async with aiohttp.ClientSession() as http:
        print(f"\n\033[1m$ curl -d List-Unsubscribe=One-Click {one_click}\033[0m   # {mail['to']} clicks unsubscribe in their mail app", flush=True)
        async with http.post(one_click, data={"List-Unsubscribe": "One-Click"}) as response:
            print(f"   HTTP {response.status}: unsubscribe recorded in the consent ledger")
        await _run("export the SMS campaign to find a texted lead", "campaign", "export", "live-lead-followup",
                   "--tenant", data.tenant, "--out", str(workdir / "sms-deliveries.csv"), env=env)
        lead = _first(workdir / "sms-deliveries.csv", state="sent", decision="send")
        if lead is None:  # every lead is inside their quiet hours: a deferred one says Stop before it is texted
            lead = _first(workdir / "sms-deliveries.csv", decision="defer")
            if lead is None:
                raise SystemExit("demo: the SMS campaign neither texted nor deferred any lead")
            print(f"\n   No lead got the campaign text: it is inside quiet hours for every one of them."
                  f" {lead['address']} was deferred to {lead['defer_until']}.")
        print(f"\n\033[1m$ (handset {lead['address']} texts \"Stop\" to +15550001111)\033[0m   # via Twilio's signed inbound webhook", flush=True)
        inbound = {"From": lead["address"], "To": "+15550001111", "Body": "Stop", "Url": f"{api}/webhooks/twilio/{data.tenant}/inbound"}
        async with http.post(f"http://127.0.0.1:{sms_port}/_capture/inbound", json=inbound) as response:
            print(f"   HTTP {response.status}: the webhook recorded the STOP and texted the confirmation back")
    await _run("a salesperson's text to that lead is now refused", "send", "individual", "--tenant", data.tenant,
               "--contact", lead["external_id"], "--channel", "sms", "--body", "Still interested in the car?", env=env, expect=1)
    await _run("and explained", "explain", "--tenant", data.tenant, "--contact", lead["external_id"], "--channel", "sms",
               "--class", "marketing", "--kind", "individual", env=env)


async def demo(workdir: Path, contacts: int, now: datetime) -> None:
    """Run the demo; the generated consent history is dated relative to `now`."""
    if workdir.exists():
        shutil.rmtree(workdir)
    data = write_dealership(workdir, contacts=contacts, now=now)
    store = workdir / "capture"
    db_url = f"sqlite+aiosqlite:///{workdir / 'consentry.db'}"
    smtp_port, sms_port, api_port = _free_port(1025), _free_port(8025), _free_port(8080)
    metrics_port = _free_port(9109)
    api = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "CONSENTRY_DATABASE_URL": db_url,
        "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CONSENTRY_TWILIO_URL": f"http://127.0.0.1:{sms_port}",
        "CONSENTRY_PUBLIC_URL": api,
        # One JSON line per batch (docs/operations.md "Logs"): kept in a file, off the terminal.
        "CONSENTRY_BATCH_LOG": str(workdir / "batches.jsonl"),
    }
    print(f"Consentry demo in {workdir}/ (SQLite, inline backend, built-in capture servers; per-batch log in batches.jsonl)")
    async with SmtpCaptureServer(host="127.0.0.1", port=smtp_port, store_dir=store) as smtp, \
            SmsCaptureServer(host="127.0.0.1", port=sms_port, store_dir=store) as sms:
        print(f"capture servers: SMTP 127.0.0.1:{smtp.port}, Twilio API http://127.0.0.1:{sms.port}/")
        await _run("create the schema", "db", "init", env=env)
        server = await _start_api(api_port, metrics_port, env)
        print(f"API (unsubscribe links, Twilio webhooks): {api}/, metrics http://127.0.0.1:{metrics_port}/metrics")
        await _run("store the dealership's consent policy", "tenant", "apply", str(data.tenant_yaml), env=env)
        await _run(f"import {contacts:,} contacts", "contacts", "import", str(data.contacts_csv), "--tenant", data.tenant, env=env)
        await _run("import their consent history", "consent", "import", str(data.events_csv), "--tenant", data.tenant, env=env)
        # Every step gates now, as in production: it sees every revocation recorded so far.
        await _run("who would the eDM reach, and why not the others?", "campaign", "check", str(data.edm_yaml),
                   "--out", str(workdir / "edm-decisions.csv"), env=env)
        await _run("why is this customer held back?", "explain", "--tenant", data.tenant, "--contact", "C0000002",
                   "--channel", "sms", "--class", "marketing", env=env)
        await _run("send the eDM", "campaign", "send", str(data.edm_yaml), env=env)
        print(f"\nThe demo started at {now.astimezone(UTC):%H:%M} UTC. Quiet hours are 21:00-08:00 in each recipient's own time zone: a lead"
              " inside them is not texted now but deferred to the window's end (email is never deferred).")
        await _run("send the live-lead texts, deferring anyone inside their quiet hours", "campaign", "send", str(data.sms_yaml), env=env)
        await _run("sending again sends nothing twice", "campaign", "send", str(data.edm_yaml), env=env)
        await _run("the SMS campaign's outcome", "campaign", "status", "live-lead-followup", "--tenant", data.tenant, env=env)
        await _run("export every recipient's outcome", "campaign", "export", "spring-service-offer", "--tenant", data.tenant,
                   "--out", str(workdir / "edm-deliveries.csv"), env=env)
        await _run("a salesperson replies to an opted-out customer", "send", "individual", "--tenant", data.tenant,
                   "--contact", "C0000003", "--channel", "email", "--subject", "Your quote", "--body", "Hi! Here is the quote you asked for.", env=env)
        await smtp.wait_for(1, timeout=5)
        try:
            await _revocations(workdir, store, data, env, api, sms.port)
            await _callbacks(sms)
        finally:
            server.terminate()
            await server.wait()
    emails = sum(1 for m in _records(store) if m["channel"] == "email")
    texts = sum(1 for m in _records(store) if m["channel"] == "sms")
    print(f"\nThe capture servers received {emails:,} emails and {texts:,} texts: {store / 'messages.jsonl'}")
    print(f"Browse them: consentry capture list --store {store} | less")
    print(f"  or run `consentry capture sms --store {store}` and open http://127.0.0.1:8025/")
    print(f"Per-recipient decisions: {workdir / 'edm-decisions.csv'} and {workdir / 'edm-deliveries.csv'}")


async def _callbacks(sms: SmsCaptureServer) -> None:
    """Say how the status callbacks to `serve` went: two a text (sent, delivered), each
    answered or failed with its cause. A timed-out callback is a status Twilio would lose."""
    expected = 2 * sum(1 for message in sms.messages if message.get("status_callback"))
    try:
        await sms.wait_for_callbacks(expected, timeout=60)
    except TimeoutError:
        pass  # the count below says how many never came back
    failed = [c for c in sms.callbacks if "error" in c or not 200 <= c.get("http_status", 0) < 300]
    print(f"\nStatus callbacks from the Twilio capture server to `serve`: {len(sms.callbacks):,} of {expected:,} "
          f"answered or failed, {len(failed):,} failed"
          + (f" (first: {failed[0].get('error') or 'HTTP ' + str(failed[0].get('http_status'))})" if failed else ""))


def _records(store: Path):  # noqa: ANN202
    path = store / "messages.jsonl"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo-data", type=Path)
    parser.add_argument("--contacts", default=10_000, type=int)
    args = parser.parse_args()
    asyncio.run(demo(args.dir.resolve(), args.contacts, now=from_us(system_clock())))

