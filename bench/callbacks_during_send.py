"""Status-callback latency while a campaign sends at full rate: `bench_sms_webhooks --during-send`.

    .venv/bin/python -m bench.bench_sms_webhooks --during-send --db sqlite
    .venv/bin/python -m bench.bench_sms_webhooks --during-send --db postgres

What `make demo` does, measured: a tenant of `--send-contacts` contacts with a phone each (no
quiet hours, so every one is texted at any hour), imported with the real CLI; a real
`consentry serve` process; the SMS capture server (in this process, on its own thread)
accepting every text and posting a signed `sent` and then `delivered` callback for each to
`serve` as soon as it goes out (every 10th number's second callback is `undelivered`, error
30003, which `serve` must record); and `consentry campaign send` at `rate.per_second:
100000` in its own process. The capture server times each callback from the start of its
POST to the answer (with the wait for one of its 100 connections, as its 15 s timeout
counts), and we report p50 / p95 / p99 / max of those, the callbacks that failed, and the
campaign's texts/s.

Baseline in the same run: the same, with `CONSENTRY_TWILIO_GROUP_COMMIT=off` (a transaction
and a tenant read per request: the handlers before the group commit). Rounds alternate,
each on a fresh database, and the median round of each is shown.

Checked after every round (reported as failures otherwise): every delivery row has its
final status (`failed` with `twilio undelivered 30003` for the undelivered numbers, `sent`
for the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TENANT = "rapid-motors"
TENANT_YAML = """\
tenant: rapid-motors
name: Rapid Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
classes:
  service: {mode: opt_out}
"""
CAMPAIGN_YAML = """\
campaign: service-blast
tenant: rapid-motors
kind: bulk
channel: sms
class: service
template: service_reminder
sender: {phone: "+15550001111"}
rate: {per_second: 100000}
"""
UNDELIVERED_EVERY = 10
MODES = {"per-request transaction (before)": "off", "group commit": "on"}


@dataclass
class Round:
    mode: str
    texts: int
    send_seconds: float
    latencies_ms: list[float]
    failed: list[str]
    wrong_rows: int
    server_cpu_s: float  # serve's CPU (user + system) from the send's start to the last callback

    @property
    def server_us_per_callback(self) -> float:
        return self.server_cpu_s / (2 * self.texts) * 1e6

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.send_seconds


AREAS = ("213", "310", "415", "512", "617", "702", "303", "312", "206", "305")  # up to 100,000 numbers


def phone(n: int) -> str:
    return f"+1{AREAS[n // 10000]}555{n % 10000:04d}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _prepare(directory: Path, contacts: int, env: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tenant, people, campaign = directory / "tenant.yaml", directory / "contacts.csv", directory / "campaign.yaml"
    tenant.write_text(TENANT_YAML, encoding="utf-8")
    campaign.write_text(CAMPAIGN_YAML, encoding="utf-8")
    with people.open("w", encoding="utf-8") as handle:
        handle.write("external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,"
                     "reviewed_at\n")
        for n in range(contacts):
            handle.write(f"R{n},Pat,Lee,,{phone(n)},America/Los_Angeles,US,,Website,,\n")
    for args in (["db", "init"], ["tenant", "apply", str(tenant)], ["contacts", "import", str(people), "--tenant", TENANT]):
        subprocess.run([sys.executable, "-m", "engine", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return campaign


async def _final_states(url: str) -> dict[str, tuple[str, str | None]]:
    from sqlalchemy import select

    from engine.db.models import Delivery
    from engine.db.session import make_engine

    table = Delivery.__table__
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(table.c.address, table.c.state, table.c.error))
            return {address: (state, error) for address, state, error in rows}
    finally:
        await engine.dispose()


def one_round(mode: str, switch: str, workdir: Path, url: str, contacts: int, capture, server_class) -> Round:  # noqa: ANN001
    """Send the campaign once against a fresh database with the group commit `switch`ed."""
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "CONSENTRY_DATABASE_URL": url, "CONSENTRY_PUBLIC_URL": public,
        "TWILIO_AUTH_TOKEN": capture.sms.auth_token, "CONSENTRY_SECRET": "bench-callbacks-secret-0123456789",
        "CONSENTRY_TWILIO_GROUP_COMMIT": switch, **capture.env,
    }  # fmt: skip
    campaign = _prepare(workdir, contacts, env)
    capture.run(capture.sms.reset)
    capture.run(setattr, capture.sms, "undelivered", {phone(n) for n in range(0, contacts, UNDELIVERED_EVERY)})
    server = server_class(env, workdir / "serve.log", None, port=port)  # a port free a moment ago
    try:
        cpu = server.cpu_seconds()
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "campaign", "send", str(campaign)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        texts = capture.sms.accepted
        if texts != contacts:
            raise SystemExit(f"{mode}: the campaign sent {texts} texts for {contacts} contacts; see {workdir}")
        callbacks = capture.call(capture.sms.wait_for_callbacks(2 * contacts, timeout=600), timeout=700)
        cpu = server.cpu_seconds() - cpu
    finally:
        server.stop()
    states = asyncio.run(_final_states(url))
    wrong = sum(
        states.get(phone(n)) != (("failed", "twilio undelivered 30003") if n % UNDELIVERED_EVERY == 0 else ("sent", None))
        for n in range(contacts)
    )
    failed = [callback.get("error") or f"HTTP {callback.get('http_status')}" for callback in callbacks
              if callback.get("http_status") != 204]
    latencies = [c["elapsed_ms"] for c in callbacks if "elapsed_ms" in c]
    return Round(mode, contacts, seconds, latencies, failed, wrong, cpu)


def run(args: argparse.Namespace, workdir: Path, server_class) -> tuple[list[Round], list[str]]:  # noqa: ANN001
    from tests.capture import ThreadedCapture

    db_server = None
    capture = ThreadedCapture(workdir / "capture")
    rounds: list[Round] = []
    try:
        if args.db == "postgres":
            from tests.servers import PostgresServer

            db_server = PostgresServer(workdir / "postgres").start()
        for n in range(args.rounds):
            for mode, switch in MODES.items():
                name = f"bench_callbacks_{n}_{switch}"
                if db_server is not None:
                    db_server.create_database(name)
                    url = db_server.url(name)
                else:
                    url = f"sqlite+aiosqlite:///{workdir / name}.db"
                result = one_round(mode, switch, workdir / name, url, args.send_contacts, capture, server_class)
                print(f"round {n + 1} {mode}: {result.texts_per_s:,.0f} texts/s, callbacks p50 "
                      f"{result.percentile(0.5):.1f} ms, p95 {result.percentile(0.95):.1f} ms, "
                      f"{len(result.failed)} failed, {result.wrong_rows} rows without their final status, serve "
                      f"{result.server_us_per_callback:,.0f} µs CPU a callback", flush=True)
                rounds.append(result)
    finally:
        capture.close()
        if db_server is not None:
            db_server.stop()
    # The baseline's lost statuses and failed callbacks are what it measures (the table says
    # them); the group commit must have none.
    ours = [r for r in rounds if r.mode == "group commit"]
    failures = [f"group commit: {r.wrong_rows} delivery rows without their final status" for r in ours if r.wrong_rows]
    failures += [f"group commit: {len(r.failed)} callbacks failed ({r.failed[0]})" for r in ours if r.failed]
    return rounds, failures


def markdown(rounds: list[Round], args: argparse.Namespace) -> str:
    lines = [
        f"Status callbacks during a send, `--db {args.db}`, {args.send_contacts:,} texts (2 callbacks each), "
        f"median of {args.rounds} alternating rounds:",
        "",
        "| handlers | texts/s sent | callback p50 ms | p95 ms | p99 ms | max ms | serve CPU µs a callback | "
        "callbacks failed | rows without final status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {}
    for mode in MODES:
        mine = sorted((r for r in rounds if r.mode == mode), key=lambda r: r.percentile(0.95))
        if not mine:
            continue
        r = mine[len(mine) // 2]
        medians[mode] = r
        lines.append(
            f"| {mode} | {r.texts_per_s:,.0f} | {r.percentile(0.5):.1f} | {r.percentile(0.95):.1f} | "
            f"{r.percentile(0.99):.1f} | {max(r.latencies_ms, default=0):,.0f} | {r.server_us_per_callback:,.0f} | "
            f"{len(r.failed)} | {r.wrong_rows} |"
        )
    before, after = medians.get("per-request transaction (before)"), medians.get("group commit")
    if before and after:
        lines += ["", f"callbacks: group commit vs before: p50 {before.percentile(0.5) / after.percentile(0.5):.1f}x "
                      f"faster, p95 {before.percentile(0.95) / after.percentile(0.95):.1f}x faster; "
                      f"send rate {after.texts_per_s / before.texts_per_s:.2f}x; serve CPU a callback "
                      f"{after.server_us_per_callback / before.server_us_per_callback:.2f}x"]
        spread = [statistics.median(r.latencies_ms) for r in rounds]
        lines.append(f"(every round's p50: {', '.join(f'{x:.1f}' for x in spread)} ms)")
    return "\n".join(lines) + "\n"
