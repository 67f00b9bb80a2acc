"""Benchmark of `contacts import` and `consent import`: rows/s, wall, peak RSS, and the import
as a multiple of checking the same file without a database.

    .venv/bin/python -m bench.bench_import --rows 1000000 --db sqlite
    .venv/bin/python -m bench.bench_import --rows 1000000 --db postgres
    .venv/bin/python -m bench.bench_import --rows 1000000 --db both

`--db both` imports the same files into SQLite and PostgreSQL, step by step in turn (so
both sides share the same minutes of a shared machine's noise), and ends with each
import's PostgreSQL rate as a multiple of SQLite's.

Generates a realistic contacts file (emails on common and company domains, phones in mixed
formats, some invalid values, a few bad rows, a tenth opted out) and an events file of as
many rows, then, each in a fresh process:

1. check-contacts: read and check the contacts file in the same worker processes as the
   import, without a database (the validation-only time);
2. import-contacts: the import into an empty database;
3. reimport-contacts: the same file again (every row an update);
4. check-events / import-events: the same for the consent events.

Each measurement runs in its own process, which reports its wall time, its own peak RSS
(`ru_maxrss`, RUSAGE_SELF) and the largest worker's (RUSAGE_CHILDREN). The machine is
shared: compare the ratios, which both sides of share the noise of the same minutes.
PostgreSQL runs from tests.servers (durability off, as in the tests) with 1 GB of
`shared_buffers`; `--pg-setting shared_buffers=128MB` (repeatable) starts it with a server
setting changed, for an A/B of that setting. A PostgreSQL step also reports the server's CPU seconds (its processes' in
/proc), so the cost a row can be split into row checks (workers), the importing process
and the server's merge.
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
from pathlib import Path

from bench.proc_cpu import postgres_cpu_seconds

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

FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
         "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Maria Jose Wei Priya Ahmed Olga "
         "Hana Lucas Chloe Mateo").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
        "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Nguyen "
        "Kim Patel Chen Rossi Muller").split()
DOMAINS = (["gmail.com"] * 35 + ["yahoo.com"] * 12 + ["hotmail.com"] * 8 + ["outlook.com"] * 8
           + ["icloud.com"] * 6 + ["aol.com"] * 3 + ["comcast.net"] * 3)
AREAS = ("212 213 312 415 617 646 702 206 305 404 512 602 713 718 773 818 858 919 972 214 303 "
         "480 503 615 704 801 813 916 925 949").split()
ZONES = ("America/New_York America/Chicago America/Denver America/Los_Angeles America/Phoenix "
         "Pacific/Honolulu").split()
SOURCES = "Website Fullpath Walk-in Referral Phone Facebook AutoTrader Cars.com".split()
STATES = "CA NY TX FL IL WA MA AZ GA NC".split()
CONTACTS_HEADER = "external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at"
EVENTS_HEADER = "external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note"


def _mix(i: int, salt: int) -> int:
    """A cheap deterministic hash: the same contact gets the same values in both files."""
    return ((i + 1) * 2654435761 + salt * 40503) % 4294967291


def contact_email(i: int) -> str:
    first, last = FIRST[i % len(FIRST)].lower(), LAST[(i // len(FIRST)) % len(LAST)].lower()
    h = _mix(i, 1)
    domain = DOMAINS[h % len(DOMAINS)] if h % 10 < 7 else f"dealer{h % 5000}.com"
    if h % 97 == 0:
        domain = domain.replace(".", "..")  # stored, flagged invalid
    if h % 31 == 0:
        domain = domain.upper()
    return f"{first}.{last}{i}@{domain}"


def contact_phone(i: int) -> tuple[str, str]:
    """(phone as typed, country cell)."""
    h = _mix(i, 2)
    if h % 100 < 3:
        return f"07{400 + h % 500} {h % 1_000_000:06d}", "GB"
    if h % 100 == 3:
        return "555", ""  # parses, not valid: stored, flagged invalid
    area = AREAS[h % len(AREAS)]
    exchange = 200 + (h // 7) % 800
    line = (h // 13) % 10_000
    shape = h % 5
    if shape == 0:
        return f"({area}) {exchange}-{line:04d}", "US"
    if shape == 1:
        return f"{area}.{exchange}.{line:04d}", ""
    if shape == 2:
        return f"+1 {area} {exchange} {line:04d}", "US"
    if shape == 3:
        return f"{area}{exchange}{line:04d}", ""
    return f"1-{area}-{exchange}-{line:04d}", "US"


def write_contacts(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(CONTACTS_HEADER + "\n")
        for i in range(rows):
            h = _mix(i, 3)
            email = contact_email(i) if h % 100 < 92 else ""
            phone, country = contact_phone(i) if h % 100 >= 5 else ("", "")
            zone = ZONES[h % len(ZONES)] if h % 10 < 3 else ""
            region = STATES[h % len(STATES)] if h % 2 else ""
            opted = ("true" if h % 10 == 0 else "Yes" if h % 50 == 1 else "false" if h % 10 == 2 else "")
            reviewed = f"2025-{1 + h % 12:02d}-{1 + h % 28:02d}" if h % 10 < 3 else ""
            if h % 10 == 3:
                reviewed = f"2024-{1 + h % 12:02d}-{1 + h % 28:02d}T{h % 24:02d}:30:00"
            if h % 2000 == 7:
                email = "two@@signs.example"  # a bad row: --skip-invalid rejects it
            first = FIRST[i % len(FIRST)]
            last = LAST[(i // len(FIRST)) % len(LAST)]
            source = SOURCES[h % len(SOURCES)]
            out.write(f"L{i:08d},{first},{last},{email},{phone},{zone},{country},{region},{source},{opted},{reviewed}\n")


def write_events(path: Path, rows: int, contacts: int) -> None:
    actions = (["grant"] * 40 + ["revoke"] * 10 + ["block"] * 10 + ["unblock"] * 5 + ["opt_out"] * 10
               + ["opt_in"] * 5 + ["review"] * 20)
    classes = ["marketing", "service", "survey", "transactional", "*"]
    methods = ["web_form", "verbal", "written", "sms_keyword", "email_link", "import"]
    offsets = ["Z", "-08:00", "-05:00", "+00:00", "+01:00"]
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(EVENTS_HEADER + "\n")
        for n in range(rows):
            h = _mix(n, 4)
            i = h % contacts
            action = actions[h % len(actions)]
            channel = klass = party = address = ""
            if action in ("grant", "revoke", "block", "unblock"):
                channel = ("email", "sms", "voice", "*")[(h // 3) % 4]
                if (h // 5) % 5 == 0:
                    address = contact_email(i) if channel == "email" else contact_phone(i)[0]
                    if channel == "*":
                        address = contact_email(i)
            if action in ("grant", "revoke"):
                klass = classes[(h // 7) % len(classes)]
                party = ("first", "third", "*", "", "first")[(h // 11) % 5]
            occurred = (f"202{3 + h % 3}-{1 + h % 12:02d}-{1 + h % 28:02d}T{h % 24:02d}:{h % 60:02d}:00"
                        f"{offsets[h % len(offsets)]}")
            method = methods[(h // 13) % len(methods)]
            actor = "sales" if h % 3 == 0 else ""
            note = "customer asked" if h % 10 == 0 else ""
            if '"' in address or "," in address:
                address = f'"{address}"'
            out.write(f"L{i:08d},{action},{channel},{klass},{party},{address},{method},{occurred},{actor},,{note}\n")


# --- measurements, each in its own process ------------------------------------------------


def _measure(kind: str, path: str, url: str, workers: int) -> dict:
    from campaigns.tenant_file import parse_tenant_text
    from engine.clock import system_clock
    from engine.db.session import make_engine
    from engine.imports import (
        check_consent_events,
        check_contacts,
        import_consent_events,
        import_contacts,
    )
    from gating import TenantPolicy

    policy = TenantPolicy.from_mapping(parse_tenant_text(TENANT_YAML))

    async def run():
        if kind == "check-contacts":
            return await check_contacts(path, policy, workers=workers)
        if kind == "check-events":
            return await check_consent_events(path, policy, workers=workers)
        engine = make_engine(url)
        try:
            importer = import_contacts if kind.endswith("contacts") else import_consent_events
            rejects = os.path.join(os.path.dirname(path), f"{kind}-rejects.csv")
            return await importer(engine, path, "bench", skip_invalid=True, rejects_path=rejects, workers=workers,
                                  clock=system_clock)
        finally:
            await engine.dispose()

    start, cpu = time.perf_counter(), time.process_time()
    summary = asyncio.run(run())
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "kind": kind,
        "rows": summary.rows_read,
        "wall_s": round(wall, 2),
        "rows_per_s": round(summary.rows_read / wall),
        "main_cpu_s": round(time.process_time() - cpu, 2),
        "workers_cpu_s": round(children.ru_utime + children.ru_stime, 2),
        "main_peak_rss_mb": round(own.ru_maxrss / 1024),
        "worker_peak_rss_mb": round(children.ru_maxrss / 1024),
        "summary": str(summary),
    }


def _in_process(kind: str, path: Path, url: str, workers: int) -> dict:
    command = [sys.executable, "-m", "bench.bench_import", "--measure", kind, str(path), "--url", url,
               "--workers", str(workers)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _prepare_database(url: str) -> None:
    from campaigns.tenant_file import parse_tenant_text
    from engine.clock import system_clock
    from engine.db.migrate import upgrade
    from engine.db.session import make_engine
    from engine.db.tenants import apply_policy

    async def run():
        engine = make_engine(url)
        try:
            await upgrade(engine)
            async with engine.begin() as conn:
                await apply_policy(conn, parse_tenant_text(TENANT_YAML), TENANT_YAML, system_clock)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _report(results: list[dict], database: str, rows: int, workers: int) -> None:
    by_kind = {result["kind"]: result for result in results}
    print(f"\n{rows:,} rows, {database}, {workers} worker processes, {os.cpu_count()} CPUs")
    print(f"{'step':<18}{'wall s':>8}{'rows/s':>10}{'main cpu':>10}{'workers cpu':>12}{'server cpu':>11}"
          f"{'main RSS':>10}{'worker RSS':>11}{'x check':>9}")
    for result in results:
        check = by_kind.get("check-" + result["kind"].split("-")[-1])
        ratio = f"{result['wall_s'] / check['wall_s']:.2f}" if check and check is not result else ""
        print(f"{result['kind']:<18}{result['wall_s']:>8.1f}{result['rows_per_s']:>10,}{result['main_cpu_s']:>10.1f}"
              f"{result['workers_cpu_s']:>12.1f}{result.get('server_cpu_s', 0.0):>11.1f}{result['main_peak_rss_mb']:>9}M{result['worker_peak_rss_mb']:>10}M{ratio:>9}")
    for result in results:
        print(f"  {result['kind']}: {result['summary']}")


def _compare(by_database: dict[str, list[dict]]) -> None:
    """Each import's rows/s on both databases, and PostgreSQL's as a multiple of SQLite's."""
    sqlite = {result["kind"]: result for result in by_database["sqlite"]}
    postgres = {result["kind"]: result for result in by_database["postgres"]}
    print("\nstep               SQLite rows/s  PostgreSQL rows/s  PostgreSQL / SQLite")
    for kind in postgres:
        if kind in sqlite and not kind.startswith("check-"):
            ratio = postgres[kind]["rows_per_s"] / sqlite[kind]["rows_per_s"]
            print(f"{kind:<18}{sqlite[kind]['rows_per_s']:>14,}{postgres[kind]['rows_per_s']:>19,}{ratio:>20.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_import", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--workers", type=int, default=None, help="default: the import's default")
    parser.add_argument("--dir", type=Path, default=None, help="keep files and database here")
    parser.add_argument("--only", choices=["contacts", "events"], default=None)
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL server setting for this run (repeatable)")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from engine.imports.parallel import DEFAULT_WORKERS

    workers = DEFAULT_WORKERS if args.workers is None else args.workers
    if args.measure:
        kind, path = args.measure
        print(json.dumps(_measure(kind, path, args.url, workers)))
        return 0

    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-import-"))
    directory.mkdir(parents=True, exist_ok=True)
    contacts, events = directory / "contacts.csv", directory / "events.csv"
    started = time.perf_counter()
    write_contacts(contacts, args.rows)
    write_events(events, args.rows, args.rows)
    print(f"generated {contacts} ({contacts.stat().st_size / 1e6:.0f} MB) and {events} "
          f"({events.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f}s", flush=True)

    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    server = None
    urls: dict[str, str] = {}
    if "postgres" in databases:
        from tests.servers import PostgresServer

        # 1 GB of shared buffers, as recommended for bulk imports (docs/operations.md): the
        # 1 M contacts and points with their indexes are ~1.4 GB; the default 128 MB made
        # the merge cost 4 % more CPU a row (docs/benchmarks.md, "Fourth pass").
        settings = {"shared_buffers": "1GB", **dict(setting.split("=", 1) for setting in args.pg_setting)}
        server = PostgresServer(directory / "postgres", settings=settings).start()
        urls["postgres"] = server.url()
    if "sqlite" in databases:
        database = directory / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        urls["sqlite"] = f"sqlite+aiosqlite:///{database}"
    try:
        for url in urls.values():
            _prepare_database(url)
        steps = [("check-contacts", contacts), ("import-contacts", contacts), ("reimport-contacts", contacts),
                 ("check-events", events), ("import-events", events)]
        if args.only:
            steps = [step for step in steps if step[0].endswith(args.only)]
            if args.only == "events":
                steps.insert(0, ("import-contacts", contacts))
        results: dict[str, list[dict]] = {name: [] for name in urls}
        for kind, path in steps:
            # A check has no database: run once, count for each.
            for name in (urls if not kind.startswith("check-") else list(urls)[:1]):
                server_before = postgres_cpu_seconds(server.data_dir) if name == "postgres" else 0.0
                result = _in_process(kind, path, urls[name], workers)
                if name == "postgres":
                    result["server_cpu_s"] = round(postgres_cpu_seconds(server.data_dir) - server_before, 2)
                print(json.dumps({"db": name, **result}), flush=True)
                for each in (urls if kind.startswith("check-") else [name]):
                    results[each].append(result)
        for name, measured in results.items():
            _report(measured, name, args.rows, workers)
        if len(results) == 2:
            _compare(results)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
