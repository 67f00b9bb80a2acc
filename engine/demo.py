"""`make demo`: the whole job on the embedded defaults, narrated.

Starts the built-in SMTP and Twilio-compatible capture servers on loopback, generates a
dealership (policy, 10,000 contacts, their consent history), imports it into a SQLite
file, checks and sends an eDM campaign and a live-lead SMS campaign through the real
`consentry` commands, and shows what was sent, what was held back and why.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from engine.capture import SmsCaptureServer, SmtpCaptureServer
from engine.sample_data import write_dealership


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


async def _run(step: str, *args: str, env: dict[str, str]) -> None:
    print(f"\n\033[1m$ consentry {' '.join(args)}\033[0m   # {step}", flush=True)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine", *args, env=env)
    code = await process.wait()
    print(f"   ({time.perf_counter() - started:.1f} s, exit {code})", flush=True)
    if code != 0:
        raise SystemExit(f"demo step failed: consentry {' '.join(args)}")


async def demo(workdir: Path, contacts: int) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    data = write_dealership(workdir, contacts=contacts)
    store = workdir / "capture"
    db_url = f"sqlite+aiosqlite:///{workdir / 'consentry.db'}"
    smtp_port, sms_port = _free_port(1025), _free_port(8025)
    env = {
        **os.environ,
        "CONSENTRY_DATABASE_URL": db_url,
        "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CONSENTRY_TWILIO_URL": f"http://127.0.0.1:{sms_port}",
        "CONSENTRY_PUBLIC_URL": "http://127.0.0.1:8080",
    }
    print(f"Consentry demo in {workdir}/ (SQLite, inline backend, built-in capture servers)")
    async with SmtpCaptureServer(host="127.0.0.1", port=smtp_port, store_dir=store) as smtp, \
            SmsCaptureServer(host="127.0.0.1", port=sms_port, store_dir=store) as sms:
        print(f"capture servers: SMTP 127.0.0.1:{smtp.port}, Twilio API http://127.0.0.1:{sms.port}/")
        await _run("create the schema", "db", "init", env=env)
        await _run("store the dealership's consent policy", "tenant", "apply", str(data.tenant_yaml), env=env)
        await _run(f"import {contacts:,} contacts", "contacts", "import", str(data.contacts_csv), "--tenant", data.tenant, env=env)
        await _run("import their consent history", "consent", "import", str(data.events_csv), "--tenant", data.tenant, env=env)
        at = "2026-11-24T18:00:00Z"  # 10 a.m. on the west coast: inside no one's quiet hours but the east's late evening
        await _run("who would the eDM reach, and why not the others?", "campaign", "check", str(data.edm_yaml),
                   "--at", at, "--out", str(workdir / "edm-decisions.csv"), env=env)
        await _run("why is this customer held back?", "explain", "--tenant", data.tenant, "--contact", "C0000002",
                   "--channel", "sms", "--class", "marketing", "--at", at, env=env)
        await _run("send the eDM", "campaign", "send", str(data.edm_yaml), env=env)
        await _run("send the live-lead texts", "campaign", "send", str(data.sms_yaml), env=env)
        await _run("sending again sends nothing twice", "campaign", "send", str(data.edm_yaml), env=env)
        await _run("the SMS campaign's outcome", "campaign", "status", "live-lead-followup", "--tenant", data.tenant, env=env)
        await _run("export every recipient's outcome", "campaign", "export", "spring-service-offer", "--tenant", data.tenant,
                   "--out", str(workdir / "edm-deliveries.csv"), env=env)
        await _run("a salesperson replies to an opted-out customer", "send", "individual", "--tenant", data.tenant,
                   "--contact", "C0000003", "--channel", "email", "--subject", "Your quote", "--body", "Hi! Here is the quote you asked for.", env=env)
        await smtp.wait_for(1, timeout=5)
    emails = sum(1 for m in _messages(store) if m == "email")
    texts = sum(1 for m in _messages(store) if m == "sms")
    print(f"\nThe capture servers received {emails:,} emails and {texts:,} texts: {store / 'messages.jsonl'}")
    print(f"Browse them: consentry capture list --store {store} | less")
    print(f"  or run `consentry capture sms --store {store}` and open http://127.0.0.1:8025/")
    print(f"Per-recipient decisions: {workdir / 'edm-decisions.csv'} and {workdir / 'edm-deliveries.csv'}")


def _messages(store: Path):  # noqa: ANN202
    import json

    path = store / "messages.jsonl"
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line).get("channel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo-data", type=Path)
    parser.add_argument("--contacts", default=10_000, type=int)
    args = parser.parse_args()
    asyncio.run(demo(args.dir.resolve(), args.contacts))


if __name__ == "__main__":
    main()
