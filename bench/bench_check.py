"""Benchmark of `campaign check --out`: recipients/s and peak RSS, against the read floor.

    .venv/bin/python -m bench.bench_check --contacts 100000 1000000 --db sqlite
    .venv/bin/python -m bench.bench_check --contacts 100000 1000000 --db postgres
    .venv/bin/python -m bench.bench_check --contacts 1000000 --db both

`--db both` builds the same dealership in SQLite and PostgreSQL and measures each size on
both, back to back, ending with PostgreSQL's check time as a multiple of SQLite's: the
machine is shared, so the figure to read is that ratio, taken minutes apart at most.

For each audience size: generates a dealership (engine/demo/sample_data.py: ~0.7 ledger events
per contact, every gating rule represented), imports it with the real CLI, then, each in a
fresh process so peak RSS is its own:

1. floor: read the same contacts with their address and ledger rows by keyset pages of
   1,000 with plain SQLAlchemy Core (no gating, no CSV), rows/s;
2. check: `consentry campaign check edm.yaml --out decisions.csv`, wall time and peak RSS.

Reports recipients/s, check time as a multiple of the floor, and RSS growth from the
smallest to the largest audience (flat memory means ~1.0x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The data is dated relative to NOW; the check gates tomorrow at 18:00 UTC (10 a.m. on the
# west coast): after every record the imports stamp, and at the same hour on any day.
NOW = datetime.now(UTC)
AT = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT18:00:00Z")


def _measure(args: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err.decode()}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "out": out.decode()}


async def read_floor(url: str, tenant: str) -> dict:
    """Keyset pages of contacts + address + ledger rows, plain Core, nothing else."""
    from sqlalchemy import and_, select

    from engine.db.models import ConsentEvent, Contact, ContactPoint, Tenant
    from engine.db.session import make_engine

    contacts, points, events = Contact.__table__, ContactPoint.__table__, ConsentEvent.__table__
    engine = make_engine(url)
    started = time.perf_counter()
    rows = 0
    async with engine.connect() as conn:
        tenant_id = (await conn.execute(select(Tenant.id).where(Tenant.code == tenant))).scalar_one()
    page = (
        select(contacts.c.id, contacts.c.external_id, contacts.c.timezone, contacts.c.lead_source,
               contacts.c.reviewed_at_us, points.c.address, points.c.is_valid, points.c.zones)
        .select_from(contacts.outerjoin(points, and_(points.c.tenant_id == contacts.c.tenant_id, points.c.contact_id == contacts.c.id, points.c.kind == "email")))
        .where(contacts.c.tenant_id == tenant_id)
        .order_by(contacts.c.id)
        .limit(1000)
    )
    last = 0
    while True:
        async with engine.connect() as conn:
            batch = (await conn.execute(page.where(contacts.c.id > last))).all()
            if not batch:
                break
            ledger = (
                await conn.execute(
                    select(events.c.contact_id, events.c.id, events.c.action, events.c.channel, events.c.class_code,
                           events.c.party, events.c.address, events.c.occurred_at_us)
                    .where(events.c.tenant_id == tenant_id, events.c.contact_id.between(batch[0][0], batch[-1][0]))
                    .order_by(events.c.contact_id, events.c.occurred_at_us, events.c.id)
                )
            ).all()
        rows += len(batch) + len(ledger)
        last = batch[-1][0]
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return {"floor_s": elapsed, "rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def prepare(directory: Path, contacts: int, url: str, env: dict[str, str]) -> Path:
    from engine.demo.sample_data import write_dealership

    data = write_dealership(directory, contacts=contacts, seed=42, now=NOW)
    cli = [sys.executable, "-m", "engine"]
    for args in (
        ["db", "init"],
        ["tenant", "apply", str(data.tenant_yaml)],
        ["contacts", "import", str(data.contacts_csv), "--tenant", data.tenant],
        ["consent", "import", str(data.events_csv), "--tenant", data.tenant],
    ):
        subprocess.run([*cli, *args, "--db", url], env=env, check=True, stdout=subprocess.DEVNULL)
    return data.edm_yaml


def run(sizes: list[int], db: str, workdir: Path) -> list[dict]:
    env = {**os.environ}
    databases = ["sqlite", "postgres"] if db == "both" else [db]
    results = []
    server = None
    try:
        if "postgres" in databases:
            from tests.servers import PostgresServer

            server = PostgresServer(workdir / "postgres").start()
        for size in sizes:
            campaigns = {}
            for name in databases:
                directory = workdir / f"n{size}-{name}"
                if name == "postgres":
                    assert server is not None
                    database = f"bench_check_{size}"
                    server.create_database(database)
                    url = server.url(database)
                else:
                    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
                    directory.mkdir(parents=True, exist_ok=True)
                campaigns[name] = (directory, url, prepare(directory, size, url, env))
            # Measured back to back, after both are prepared: the same minutes of noise.
            for name, (directory, url, campaign) in campaigns.items():
                result = {"db": name, **_check(size, directory, url, campaign, env)}
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        if server is not None:
            server.stop()
    for name in databases:
        mine = [result for result in results if result["db"] == name]
        if len(mine) > 1:
            growth = mine[-1]["check_peak_rss_mb"] / mine[0]["check_peak_rss_mb"]
            print(json.dumps({"db": name, "rss_growth": round(growth, 2)}), flush=True)
    if len(databases) == 2:
        for size in sizes:
            sqlite, postgres = (next(r for r in results if r["db"] == name and r["contacts"] == size)
                                for name in ("sqlite", "postgres"))
            print(f"check {size:,}: SQLite {sqlite['check_wall_s']} s, PostgreSQL {postgres['check_wall_s']} s, "
                  f"PostgreSQL / SQLite = {postgres['check_wall_s'] / sqlite['check_wall_s']:.2f}x", flush=True)
    return results


def _check(size: int, directory: Path, url: str, campaign: Path, env: dict[str, str]) -> dict:
    floor = _measure([sys.executable, "-m", "bench.bench_check", "--floor", url], env)
    floor_result = json.loads(floor["out"].strip().splitlines()[-1])
    check = _measure(
        [sys.executable, "-m", "engine", "campaign", "check", str(campaign), "--at", AT,
         "--out", str(directory / "decisions.csv"), "--db", url, "--json"], env,
    )
    counted = json.loads(check["out"])["total"]
    return {
        "contacts": size, "recipients": counted,
        "check_wall_s": round(check["wall_s"], 2),
        "check_cpu_s": round(check["cpu_s"], 2),
        "recipients_per_s": round(counted / check["wall_s"]),
        "check_peak_rss_mb": round(check["peak_rss_mb"], 1),
        "floor_s": round(floor_result["floor_s"], 2),
        "floor_rows": floor_result["rows"],
        "floor_rows_per_s": round(floor_result["rows"] / floor_result["floor_s"]),
        "check_vs_floor": round(check["wall_s"] / floor["wall_s"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_check", description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--floor", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        tenant = "acme-motors"
        print(json.dumps(asyncio.run(read_floor(args.floor, tenant))))
        return
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args.contacts, args.db, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
        os.chmod(tmp, 0o755)
        run(args.contacts, args.db, Path(tmp))


if __name__ == "__main__":
    main()
