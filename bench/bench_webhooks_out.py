"""Outbound webhooks: events/s delivered to a loopback receiver, against bare aiohttp POSTs
of the same bodies; and what the outbox costs a consent import.

    python -m bench.bench_webhooks_out [--events 20000] [--concurrency 16] [--import-rows 100000]
                                       [--repeat 3] [--db sqlite|postgres] [--skip-import]

Dispatch. The outbox is filled with `--events` real consent events (a consent import with
one endpoint subscribed), then, against the same receiver:

- dispatcher: `engine.webhooks.Dispatcher.run_until_idle()` at `--concurrency`: claim a
  batch, sign each body (Standard Webhooks), POST, record every result, repeat;
- baseline: the same bodies POSTed with one aiohttp session at the same concurrency, no
  database, no signature: the floor of what any sender in this process could do.

The receiver runs in its own process (a bare aiohttp app answering 204; it reads the body
and does not verify, so its cost is the same for both), so its CPU is not charged to the
client; with two cores, each gets one. Each side runs `--repeat` times, alternating; the
outbox is reset to pending between runs.

Import. `--import-rows` consent events imported into a fresh database of as many contacts,
each in its own process, `--repeat` times, in three modes:

- before: the ledger's outbox hook bypassed (the import as it was before webhooks);
- no endpoint: the product as shipped, the tenant with no endpoint (one query a chunk);
- one endpoint: an endpoint subscribed to every consent type (an outbox row per event).

The machine is shared and noisy: read the ratios of one run, and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TENANT_YAML = """\
tenant: bench
name: Bench Motors
regime: opt_out
country: US
timezone: America/Chicago
classes:
  marketing: {mode: opt_out}
  service: {mode: opt_out}
  survey: {mode: opt_in}
  transactional: {mode: exempt}
"""
ALL_CONSENT = ["consent.opt_out", "consent.opt_in", "consent.revoke", "consent.grant", "consent.block",
               "consent.unblock"]


# --- the receiver, in its own process -----------------------------------------------------


def _sink(port: int) -> None:
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


class Sink:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.bench_webhooks_out", "--sink", "0"],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"sink did not start: {line!r}")
        self.url = line.split("listening on ")[1].strip() + "/hook"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


# --- databases ------------------------------------------------------------------------------


def _files(directory: Path, rows: int) -> tuple[Path, Path]:
    from bench.bench_import import write_contacts, write_events

    contacts, events = directory / "contacts.csv", directory / "events.csv"
    if not contacts.exists():
        write_contacts(contacts, rows)
        write_events(events, rows, rows)
    return contacts, events


async def _prepare(url: str, contacts: Path) -> None:
    from campaigns.tenant_file import parse_tenant_text
    from engine.clock import system_clock
    from engine.db.migrate import upgrade
    from engine.db.session import make_engine
    from engine.db.tenants import apply_policy
    from engine.imports import import_contacts

    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await apply_policy(conn, parse_tenant_text(TENANT_YAML), TENANT_YAML, system_clock)
        await import_contacts(engine, str(contacts), "bench", skip_invalid=True,
                              rejects_path=str(contacts) + ".rejects", clock=system_clock)
    finally:
        await engine.dispose()


async def _add_endpoint(url: str, hook: str) -> None:
    from engine.clock import system_clock
    from engine.db.session import make_engine
    from engine.db.tenants import load_tenant
    from engine.webhooks import create_endpoint

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            tenant = await load_tenant(conn, "bench")
            await create_endpoint(conn, tenant.id, hook, ALL_CONSENT, "bench", system_clock())
    finally:
        await engine.dispose()


class Databases:
    """Fresh databases holding the contacts, copied from one prepared template."""

    def __init__(self, kind: str, directory: Path, contacts: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.server = None
        self.count = 0
        if kind == "postgres":
            from tests.servers import PostgresServer

            self.server = PostgresServer(directory / "postgres").start()
            self.template_url = self.server.url()
            self.template = self.template_url.rsplit("/", 1)[1]
        else:
            self.template = str(directory / "template.db")
            self.template_url = f"sqlite+aiosqlite:///{self.template}"
        asyncio.run(_prepare(self.template_url, contacts))
        if self.server is not None:
            asyncio.run(self._sql(f"ALTER DATABASE {self.template} IS_TEMPLATE true"))

    async def _sql(self, statement: str) -> None:
        import asyncpg

        assert self.server is not None
        url = self.template_url.replace("postgresql+asyncpg", "postgresql").rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def fresh(self) -> str:
        self.count += 1
        if self.server is not None:
            name = f"bench_{self.count}"
            asyncio.run(self._sql(f"CREATE DATABASE {name} TEMPLATE {self.template}"))
            return self.template_url.rsplit("/", 1)[0] + "/" + name
        path = self.directory / f"copy{self.count}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite+aiosqlite:///{path}"

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


# --- measurements ---------------------------------------------------------------------------


def _measure_import(url: str, events: str, mode: str) -> dict:
    """In its own process: one consent import, in `mode`."""
    from engine.clock import system_clock
    from engine.db.session import make_engine
    from engine.imports import import_consent_events

    if mode == "before":
        import engine.imports.ledger as ledger

        async def no_outbox(_conn, _rows):  # noqa: ANN001, ANN202 - the ledger as it was
            return None

        ledger.ledger_outbox = no_outbox  # type: ignore[assignment]

    async def run():
        engine = make_engine(url)
        try:
            return await import_consent_events(engine, events, "bench", skip_invalid=True,
                                               rejects_path=events + f".{mode}.rejects", clock=system_clock)
        finally:
            await engine.dispose()

    started = time.perf_counter()
    summary = asyncio.run(run())
    wall = time.perf_counter() - started
    return {"mode": mode, "wall_s": wall, "rows": summary.rows_read, "events": summary.events_recorded}


def _import_once(databases: Databases, events: Path, mode: str, sink_url: str) -> dict:
    url = databases.fresh()
    if mode == "one endpoint":
        asyncio.run(_add_endpoint(url, sink_url))
    done = subprocess.run([sys.executable, "-m", "bench.bench_webhooks_out", "--measure-import", url, str(events), mode],
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["outbox"] = asyncio.run(_count_outbox(url))
    return result


async def _count_outbox(url: str) -> int:
    from sqlalchemy import func, select

    from engine.db.models import WebhookMessage
    from engine.db.session import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(WebhookMessage.__table__))).scalar_one()
    finally:
        await engine.dispose()


async def _dispatch_runs(url: str, sink_url: str, concurrency: int, repeat: int) -> tuple[list[float], list[float], int]:
    import aiohttp
    from sqlalchemy import select, update

    from engine.clock import system_clock
    from engine.db.models import WebhookMessage
    from engine.db.session import make_engine
    from engine.webhooks.dispatcher import Dispatcher, DispatchOptions
    from metrics import Instruments

    messages = WebhookMessage.__table__
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            bodies = list((await conn.execute(select(messages.c.payload).order_by(messages.c.id))).scalars())
        options = DispatchOptions(concurrency=concurrency)
        product, baseline = [], []
        for _ in range(repeat):
            async with engine.begin() as conn:
                await conn.execute(update(messages).values(state="pending", attempts=0, next_attempt_at_us=0,
                                                           claim_token=None, claim_until_us=None, delivered_at_us=None))
            dispatcher = Dispatcher(engine, system_clock, options, Instruments.fresh())
            started = time.perf_counter()
            made = await dispatcher.run_until_idle()
            product.append(made / (time.perf_counter() - started))
            async with engine.connect() as conn:
                delivered = (await conn.execute(select(messages.c.id).where(messages.c.state == "delivered"))).all()
            if len(delivered) != len(bodies):
                raise RuntimeError(f"{len(delivered)} of {len(bodies)} delivered")

            started = time.perf_counter()
            await _bare_posts(aiohttp, sink_url, bodies, concurrency)
            baseline.append(len(bodies) / (time.perf_counter() - started))
        return product, baseline, len(bodies)
    finally:
        await engine.dispose()


async def _bare_posts(aiohttp, url: str, bodies: list[str], concurrency: int) -> None:  # noqa: ANN001
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body in queue:
                async with session.post(url, data=body.encode(), headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 204:
                        raise RuntimeError(f"sink answered {r.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_webhooks_out", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure-import", nargs=3, metavar=("URL", "FILE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink is not None:
        _sink(args.sink)
        return 0
    if args.measure_import:
        print(json.dumps(_measure_import(*args.measure_import)))
        return 0

    directory = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    sink = Sink()
    print(f"{os.cpu_count()} CPUs, {args.db}, receiver {sink.url}", flush=True)
    try:
        # Dispatch: an outbox of real consent events, from an import with one endpoint.
        (directory / "dispatch").mkdir()
        contacts, events = _files(directory / "dispatch", args.events)
        databases = Databases(args.db, directory / "dispatch", contacts)
        try:
            url = databases.fresh()
            asyncio.run(_add_endpoint(url, sink.url))
            subprocess.run([sys.executable, "-m", "bench.bench_webhooks_out", "--measure-import", url, str(events),
                            "one endpoint"], check=True, capture_output=True)
            product, baseline, n = asyncio.run(_dispatch_runs(url, sink.url, args.concurrency, args.repeat))
        finally:
            databases.close()
        print(f"\ndispatch of {n:,} events, concurrency {args.concurrency}, {args.repeat} runs each")
        print(f"  dispatcher (claim, sign, POST, record): {', '.join(f'{r:,.0f}' for r in product)} events/s; "
              f"median {statistics.median(product):,.0f}")
        print(f"  baseline (bare aiohttp POSTs):          {', '.join(f'{r:,.0f}' for r in baseline)} events/s; "
              f"median {statistics.median(baseline):,.0f}")
        print(f"  dispatcher ÷ baseline: {statistics.median(product) / statistics.median(baseline):.2f}", flush=True)

        if not args.skip_import:
            (directory / "import").mkdir()
            contacts, events = _files(directory / "import", args.import_rows)
            databases = Databases(args.db, directory / "import", contacts)
            try:
                results: dict[str, list[dict]] = {"before": [], "no endpoint": [], "one endpoint": []}
                for _ in range(args.repeat):
                    for mode in results:
                        result = _import_once(databases, events, mode, sink.url)
                        print(json.dumps(result), flush=True)
                        results[mode].append(result)
            finally:
                databases.close()
            before = statistics.median(r["wall_s"] for r in results["before"])
            print(f"\nconsent import of {args.import_rows:,} rows ({results['before'][0]['events']:,} events), "
                  f"median of {args.repeat}")
            for mode, runs in results.items():
                wall = statistics.median(r["wall_s"] for r in runs)
                print(f"  {mode:<13} {wall:6.2f} s  {runs[0]['rows'] / wall:>9,.0f} rows/s  ÷ before {wall / before:.3f}"
                      f"  outbox rows {runs[0]['outbox']:,}")
    finally:
        sink.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
