"""Throughput of `campaign send` through a real relay (Postfix) against straight to the sink.

    .venv/bin/python -m bench.bench_relay                       # 500 recipients, SQLite
    .venv/bin/python -m bench.bench_relay --recipients 2000 --concurrency 32

In one run, on one SQLite database of `--recipients` sendable contacts:

1. `campaign send` straight to our capture server (no TLS, no AUTH): the floor of the
   comparison, what bench/bench_send.py measures;
2. `campaign send` through Debian's Postfix on loopback (tests/servers.py `PostfixServer`:
   STARTTLS with a private CA, SASL AUTH, the configured EHLO name), which relays every
   message to the same capture server. Two figures: messages/s until `campaign send` exits
   (Postfix accepted them all: what the campaign waits for) and until the last one reached
   the capture server (Postfix's queue drained).

Each send is a fresh process (`python -m engine campaign send`), timed from its start.
Needs root (Postfix's master starts as root) and scripts/ensure-system-deps.sh's packages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_send import EMAIL_CAMPAIGN, prepare
from bench.bench_transport import capture_server
from tests.servers import PostfixServer


def stored(store: Path) -> int:
    try:
        with (store / "messages.jsonl").open("rb") as handle:
            return sum(1 for _line in handle)
    except FileNotFoundError:
        return 0


def send(url: str, directory: Path, code: str, env: dict[str, str], concurrency: int) -> float:
    """Run `campaign send`; its wall time in seconds."""
    path = directory / f"{code}.yaml"
    path.write_text(EMAIL_CAMPAIGN.format(code=code))
    args = [sys.executable, "-m", "engine", "campaign", "send", str(path), "--db", url, "--concurrency", str(concurrency)]
    started = time.perf_counter()
    result = subprocess.run(args, env={**os.environ, **env}, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"campaign send {code} exited {result.returncode}:\n{result.stderr.decode()}")
    return wall


def wait_for(store: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while stored(store) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sink has {stored(store)} of {count} messages after {timeout:.0f} s")
        time.sleep(0.01)


def run(args: argparse.Namespace, workdir: Path) -> list[dict]:
    count = args.recipients
    url = prepare(workdir / "db", count)
    store = workdir / "sink"
    sink = capture_server("smtp", store, 0)
    relay = PostfixServer(workdir / "postfix", sink.port)
    rows = []
    try:
        relay.start()
        direct = {"CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{sink.port}"}
        through = {"CONSENTRY_SMTP_URL": relay.url(), "CONSENTRY_SMTP_CA_FILE": str(relay.ca_file),
                   "CONSENTRY_SMTP_EHLO_NAME": "bench.consentry.test"}
        for repeat in range(args.repeat):
            before = stored(store)
            direct_s = send(url, workdir, f"direct-{repeat}", direct, args.concurrency)
            wait_for(store, before + count, 60)
            before = stored(store)
            started = time.perf_counter()
            accepted_s = send(url, workdir, f"postfix-{repeat}", through, args.concurrency)
            relay.wait_until_relayed(timeout=120)
            wait_for(store, before + count, 60)
            relayed_s = time.perf_counter() - started
            row = {
                "recipients": count, "concurrency": args.concurrency, "repeat": repeat,
                "direct_per_s": round(count / direct_s), "postfix_accepted_per_s": round(count / accepted_s),
                "postfix_relayed_per_s": round(count / relayed_s),
                "accepted_vs_direct": round(direct_s / accepted_s, 2), "relayed_vs_direct": round(direct_s / relayed_s, 2),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        relay.stop()
        sink.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_relay", description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (direct, then through Postfix)")
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.dir:
        run(args, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="consentry-relay-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
