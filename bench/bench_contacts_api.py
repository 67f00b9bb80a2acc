"""The contacts and consent-events API: requests/s through a real `consentry serve`.

    .venv/bin/python -m bench.bench_contacts_api --db postgres
    .venv/bin/python -m bench.bench_contacts_api --db sqlite --contacts 2000 --seconds 3

A dealership of `--contacts` contacts with its ledger (engine/demo/sample_data.py, imported
with the real CLI), a `sales` API key, and `consentry serve` in its own process on a free
loopback port. For each concurrency of `--concurrency` (default 16 and 64), each operation
runs for `--seconds` with that many requests in flight, from this process (aiohttp):

- `healthz`: GET /healthz, the baseline (aiohttp, a pool checkout, `SELECT 1`);
- `upsert`: PUT /api/v1/contacts/{id} of an existing contact (a changed name and email);
- `batch`: POST /api/v1/contacts/batch of 1,000 contacts (half new, half existing);
- `append`: POST .../consent-events, one grant;
- `explain`: GET .../explain?channel=email&class=marketing;
- `read`: GET /api/v1/contacts/{id} (addresses and consent through gating).

Reported: requests/s (contacts/s for the batch), p50 / p99 latency as the client sees it,
server CPU per request (utime + stime of the serve process, from /proc). Every answer must
be a 2xx (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.bench_sms_webhooks import AUTH_TOKEN, PUBLIC_URL, SECRET, Server, prepare

TENANT = "acme-motors"


async def drive(concurrency: int, seconds: float, request: Callable[[int], Awaitable[int]]) -> tuple[int, list[float], list[int]]:
    """Run `request(n)` with `concurrency` in flight for `seconds`: (count, latencies, bad statuses)."""
    latencies: list[float] = []
    bad: list[int] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            started = time.perf_counter()
            status = await request(n)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                bad.append(status)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, bad


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(server: Server, key: str, args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    base = server.base_url
    headers = {"Authorization": f"Bearer {key}"}
    rows: list[dict] = []
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=max(args.concurrency) + 8)
    async with aiohttp.ClientSession(base_url=base, connector=connector, headers=headers) as session:
        ids: list[str] = []
        after = None
        while len(ids) < 1000:
            async with session.get("/api/v1/contacts", params={"limit": "500", **({"after": str(after)} if after else {})}) as r:
                page = await r.json()
            ids += [c["external_id"] for c in page["contacts"]]
            after = page["next_after"]
            if after is None:
                break
        batch_number = iter(range(10**9))

        async def healthz(n: int) -> int:
            async with session.get("/healthz") as r:
                await r.read()
                return r.status

        async def upsert(n: int) -> int:
            body = {"first_name": f"Name{n}", "email": f"bench{n % 5000}@example.com"}
            async with session.put(f"/api/v1/contacts/{ids[n % len(ids)]}", json=body) as r:
                await r.read()
                return r.status

        async def batch(n: int) -> int:
            b = next(batch_number)
            contacts = [{"external_id": ids[i % len(ids)], "region": f"R{b}"} for i in range(500)]
            contacts += [{"external_id": f"BATCH-{b}-{i}", "first_name": "New", "phone": f"+1213555{i:04d}"} for i in range(500)]
            async with session.post("/api/v1/contacts/batch", json={"contacts": contacts}) as r:
                await r.read()
                return r.status

        async def append(n: int) -> int:
            body = {"action": "grant", "channel": "email", "class": "survey", "method": "web_form",
                    "occurred_at": "2026-01-01T10:00:00Z"}
            async with session.post(f"/api/v1/contacts/{ids[n % len(ids)]}/consent-events", json=body) as r:
                await r.read()
                return r.status

        async def explain(n: int) -> int:
            async with session.get(f"/api/v1/contacts/{ids[n % len(ids)]}/explain",
                                   params={"channel": "email", "class": "marketing"}) as r:
                await r.read()
                return r.status

        async def read(n: int) -> int:
            async with session.get(f"/api/v1/contacts/{ids[n % len(ids)]}") as r:
                await r.read()
                return r.status

        operations = {"healthz": healthz, "upsert": upsert, "batch": batch, "append": append, "explain": explain, "read": read}
        for concurrency in args.concurrency:
            for name, request in operations.items():
                cpu = server.cpu_seconds()
                started = time.perf_counter()
                count, latencies, bad = await drive(concurrency, args.seconds, request)
                elapsed = time.perf_counter() - started
                cpu = server.cpu_seconds() - cpu
                per = 1000 if name == "batch" else 1
                rows.append({
                    "operation": name, "concurrency": concurrency, "requests": count,
                    "rate": count / elapsed, "items_rate": count * per / elapsed,
                    "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
                    "cpu_ms": cpu / max(count, 1) * 1000,
                })
                print(f"{name:8} c={concurrency:<3} {count / elapsed:8.1f} req/s  p50 {rows[-1]['p50_ms']:7.1f} ms  "
                      f"p99 {rows[-1]['p99_ms']:7.1f} ms  cpu {rows[-1]['cpu_ms']:6.2f} ms/req", flush=True)
                if bad:
                    failures.append(f"{name} c={concurrency}: {len(bad)} non-2xx answers, e.g. {bad[:5]}")
    return rows, failures


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"`--db {args.db} --contacts {args.contacts} --seconds {args.seconds}`, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| operation | clients | requests/s | items/s | p50 ms | p99 ms | server CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['operation']} | {row['concurrency']} | {row['rate']:,.1f} | {row['items_rate']:,.0f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['cpu_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-contacts-api-") as tmp:
        workdir = Path(tmp)
        db_server = None
        try:
            if args.db == "postgres":
                from tests.servers import PostgresServer

                db_server = PostgresServer(workdir / "postgres").start()
                db_server.create_database("bench_contacts_api")
                url = db_server.url("bench_contacts_api")
            else:
                url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            env = {
                **os.environ, "CONSENTRY_DATABASE_URL": url, "CONSENTRY_SECRET": SECRET,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CONSENTRY_PUBLIC_URL": PUBLIC_URL,
                "CONSENTRY_WEBHOOK_DISPATCH": "off",
            }  # fmt: skip
            prepare(workdir / "data", args.contacts, env)
            key = subprocess.run(
                [sys.executable, "-m", "engine", "keys", "create", "--tenant", TENANT, "--role", "sales", "--name", "bench"],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip()
            server = Server(env, workdir / "serve.log", None)
            try:
                rows, failures = asyncio.run(bench(server, key, args))
            finally:
                server.stop()
        finally:
            if db_server is not None:
                db_server.stop()
    print()
    print(markdown(rows, args))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
