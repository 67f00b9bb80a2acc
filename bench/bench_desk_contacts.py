"""The desk's address book over 1,000,000 contacts (PostgreSQL): page response times.

    .venv/bin/python -m bench.bench_desk_contacts
    .venv/bin/python -m bench.bench_desk_contacts --contacts 100000 --requests 20

A tenant of `--contacts` contacts, each with an email, a phone number and one consent
event, written by `INSERT ... SELECT generate_series` (the importer is measured elsewhere),
plus a second tenant of a tenth the size whose rows every query must skip. Then `consentry
serve` in its own process, a desk user of role `sales` signed in over HTTP, and `--requests`
sequential GETs of each page, as a browser asks for them:

- `baseline`: GET /healthz (aiohttp, a pool checkout, `SELECT 1`), the machine's floor;
- `list`: /desk/contacts (the first page of the address book, no search);
- `name`: /desk/contacts?q=<a first-name prefix>, `full name`: ?q=<"first last" prefix>;
- `email`: ?q=<an email's prefix>; `phone`: ?q=<7 digits of a number>; `external id`: ?q=<an id>;
- `contact`: /desk/contacts/{id} (addresses, consent grid, timeline, review state);
- `contact+explain`: the same with the explain table filled in.

Each query names a different contact every request (no result cache helps); one request of
each kind before its timed ones warms the process (the first explain compiles the policy). Reported:
p50 / p95 in ms and p95 as a multiple of the baseline's p95, for the search with migration
0012's indexes and, with `--without-indexes`, the same searches once the indexes are
dropped (a few requests each: each one reads the whole table). Exit 1 on a non-200 answer
or a search that misses the contact it names.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bench_sms_webhooks import AUTH_TOKEN, PUBLIC_URL, SECRET, Server

TENANT, OTHER = "acme-motors", "other-motors"
PASSWORD = "bench password for the desk"
NOW_US = 1_780_000_000_000_000
FIRST = ("Ava", "Liam", "Emma", "Noah", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Isabella", "Mason",
         "Amelia", "Logan", "Harper", "Elijah", "Evelyn", "James", "Abigail", "Benjamin")
LAST = ("Smith", "Garcia", "Johnson", "Brown", "Lee", "Martinez", "Davis", "Lopez", "Wilson", "Anderson",
        "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Perez", "Thompson", "White", "Harris", "Clark")
TENANT_YAML = """\
tenant: {code}
name: {code}
regime: opt_out
country: US
timezone: America/Los_Angeles
postal_address: "1 Main St, Springfield, CA 90000, USA"
classes:
  marketing: {{mode: opt_out}}
  service: {{mode: opt_out}}
  survey: {{mode: opt_in}}
  transactional: {{mode: exempt}}
"""
_INDEXES = ("ix_contact_points_search_phone", "ix_contact_points_search_email", "ix_contacts_search_full",
            "ix_contacts_search_last")


def populate(url: str, tenant_id: int, prefix: str, count: int) -> None:
    """`count` contacts of `tenant_id`: external id {prefix}{i}, name from the lists plus i,
    email {first}.{last}{i}@example.com, phone +1 2xx 5xx xxxx from i; one grant each."""
    first = "ARRAY[" + ",".join(f"'{n}'" for n in FIRST) + "]"
    last = "ARRAY[" + ",".join(f"'{n}'" for n in LAST) + "]"
    script = f"""
    INSERT INTO contacts (tenant_id, external_id, first_name, last_name, timezone, country, lead_source,
                          opted_out, created_at_us, updated_at_us)
    SELECT {tenant_id}, '{prefix}' || i, ({first})[1 + i % 20] || CASE WHEN i % 7 = 0 THEN '' ELSE chr(97 + i % 26) END,
           ({last})[1 + (i / 20) % 20] || (i % 1000), 'America/Los_Angeles', 'US', 'Website',
           i % 10 = 0, {NOW_US}, {NOW_US}
    FROM generate_series(1, {count}) AS i;
    INSERT INTO contact_points (tenant_id, contact_id, kind, address, is_valid, zones, updated_at_us)
    SELECT {tenant_id}, c.id, 'email',
           lower(c.first_name) || '.' || lower(c.last_name) || '.' || substr(c.external_id, 2) || '@example.com',
           true, NULL, {NOW_US}
    FROM contacts c WHERE c.tenant_id = {tenant_id};
    INSERT INTO contact_points (tenant_id, contact_id, kind, address, is_valid, zones, updated_at_us)
    SELECT {tenant_id}, c.id, 'phone', '+1' || (200 + n % 700) || lpad(((n * 7919) % 10000000)::text, 7, '0'),
           true, 'America/Los_Angeles', {NOW_US}
    FROM (SELECT id, substr(external_id, 2)::bigint AS n FROM contacts WHERE tenant_id = {tenant_id}) AS c;
    INSERT INTO consent_events (tenant_id, contact_id, action, channel, class_code, party, method,
                                occurred_at_us, recorded_at_us, actor, note)
    SELECT {tenant_id}, c.id, 'grant', 'email', 'survey', 'first', 'web_form', {NOW_US} - 86400000000, {NOW_US},
           'bench', 'signed up on the web site'
    FROM contacts c WHERE c.tenant_id = {tenant_id};
    """
    _psql(url, script)


def _psql(url: str, script: str) -> None:
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-q", plain], input=script, text=True, check=True,
                   stdout=subprocess.DEVNULL)


def _query(url: str, sql: str) -> str:
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    return subprocess.run(["psql", "-At", plain, "-c", sql], text=True, check=True, capture_output=True).stdout.strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(session: aiohttp.ClientSession, paths: list[tuple[str, str | None]]) -> tuple[list[float], list[str]]:
    """GET each path in turn: (latencies, failures); `expect` must appear in the page."""
    latencies, failures = [], []
    for path, expect in paths:
        started = time.perf_counter()
        async with session.get(path, allow_redirects=False) as response:
            text = await response.text()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            failures.append(f"{path}: {response.status}")
        elif expect is not None and expect not in text:
            failures.append(f"{path}: {expect!r} not on the page")
    return latencies, failures


def workloads(count: int, requests: int, seed: int) -> dict[str, list[tuple[str, str | None]]]:
    rng = random.Random(seed)
    picks = [rng.randrange(1, count + 1) for _ in range(requests)]
    # What populate() wrote for contact i (ids of the first tenant are 1..count).
    def first(i: int) -> str:
        return FIRST[i % 20] + ("" if i % 7 == 0 else chr(97 + i % 26))

    def last(i: int) -> str:
        return f"{LAST[(i // 20) % 20]}{i % 1000}"

    def phone(i: int) -> str:
        return f"{(i * 7919) % 10_000_000:07d}"

    def link(i: int) -> str:
        return f'href="/desk/contacts/C{i}"'

    return {
        "baseline": [("/healthz", None)] * requests,
        "list": [("/desk/contacts", None)] * requests,
        "name": [(f"/desk/contacts?q={first(i)[:3].lower()}", None) for i in picks],
        "full name": [(f"/desk/contacts?q={first(i)}+{last(i)}", None) for i in picks],
        "email": [(f"/desk/contacts?q={first(i).lower()}.{last(i).lower()}.{i}@", link(i)) for i in picks],
        "phone": [(f"/desk/contacts?q={phone(i)}", link(i)) for i in picks],
        "external id": [(f"/desk/contacts?q=C{i}", link(i)) for i in picks],
        "contact": [(f"/desk/contacts/C{i}?review=later", "Consent log") for i in picks],
        "contact+explain": [
            (f"/desk/contacts/C{i}?review=later&channel=email&class=marketing&party=first&kind=bulk", "Every rule")
            for i in picks
        ],
    }


async def run(base_url: str, args: argparse.Namespace, url: str) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    failures: list[str] = []
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=base_url, cookie_jar=jar) as session:
        async with session.post("/desk/sign-in", data={
            "tenant": TENANT, "username": "sales", "password": PASSWORD, "next": "/desk/contacts",
        }, allow_redirects=False) as response:
            if response.status != 303:
                raise SystemExit(f"sign-in failed: {response.status} {await response.text()}")
        loads = workloads(args.contacts, args.requests, 7)
        await measure(session, loads["list"][:5])  # warm the pool and the caches of the process
        baseline_p95 = 0.0
        for name, paths in loads.items():
            await measure(session, paths[-1:])  # one warm-up: the first explain compiles the policy, etc.
            latencies, bad = await measure(session, paths)
            failures += bad
            p95 = percentile(latencies, 0.95)
            if name == "baseline":
                baseline_p95 = p95
            rows.append({"page": name, "indexes": "yes", "requests": len(paths), "p50": percentile(latencies, 0.5),
                         "p95": p95, "ratio": p95 / baseline_p95 if baseline_p95 else 0.0})
            print(f"{name:16} p50 {rows[-1]['p50']:8.1f} ms  p95 {p95:8.1f} ms  ({rows[-1]['ratio']:.0f}x baseline)",
                  flush=True)
        if args.without_indexes:
            _psql(url, "".join(f"DROP INDEX {name};" for name in _INDEXES) + "ANALYZE contacts; ANALYZE contact_points;")
            for name in ("name", "full name", "email", "phone", "external id"):
                latencies, bad = await measure(session, loads[name][: args.without_requests])
                failures += bad
                p95 = percentile(latencies, 0.95)
                rows.append({"page": name, "indexes": "no", "requests": len(latencies),
                             "p50": percentile(latencies, 0.5), "p95": p95, "ratio": p95 / baseline_p95})
                print(f"{name:16} without indexes: p50 {rows[-1]['p50']:8.1f} ms  p95 {p95:8.1f} ms", flush=True)
    return rows, failures


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"`--contacts {args.contacts} --requests {args.requests}`, PostgreSQL, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, sequential requests",
        "",
        "| page | migration 0012 indexes | requests | p50 ms | p95 ms | p95 / baseline p95 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['page']} | {row['indexes']} | {row['requests']} | {row['p50']:.1f} | {row['p95']:.1f} | "
                     f"{row['ratio']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--without-indexes", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the searches with migration 0012's indexes dropped")
    parser.add_argument("--without-requests", type=int, default=5)
    args = parser.parse_args()
    from tests.servers import PostgresServer

    with tempfile.TemporaryDirectory(prefix="bench-desk-contacts-") as tmp:
        workdir = Path(tmp)
        db_server = PostgresServer(workdir / "postgres").start()
        try:
            db_server.create_database("bench_desk_contacts")
            url = db_server.url("bench_desk_contacts")
            env = {
                **os.environ, "CONSENTRY_DATABASE_URL": url, "CONSENTRY_SECRET": SECRET,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CONSENTRY_PUBLIC_URL": PUBLIC_URL,
                "CONSENTRY_WEBHOOK_DISPATCH": "off",
            }  # fmt: skip

            def cli(*command: str, stdin: str | None = None) -> None:
                subprocess.run([sys.executable, "-m", "engine", *command], env=env, check=True, input=stdin,
                               text=True, stdout=subprocess.DEVNULL)

            cli("db", "init")
            for code in (TENANT, OTHER):
                path = workdir / f"{code}.yaml"
                path.write_text(TENANT_YAML.format(code=code), encoding="utf-8")
                cli("tenant", "apply", str(path))
            # Bulk loading builds the search indexes once at the end (as a restore would),
            # not row by row; their definitions are migration 0012's, read back from it.
            definitions = _query(url, "SELECT string_agg(indexdef, '; ') FROM pg_indexes WHERE indexname IN ("
                                 + ",".join(f"'{name}'" for name in _INDEXES) + ")")
            _psql(url, "".join(f"DROP INDEX {name};" for name in _INDEXES))
            started = time.perf_counter()
            for code, prefix, count in ((TENANT, "C", args.contacts), (OTHER, "O", max(args.contacts // 10, 1))):
                tenant_id = int(_query(url, f"SELECT id FROM tenants WHERE code = '{code}'"))
                populate(url, tenant_id, prefix, count)
            print(f"populated in {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            _psql(url, definitions + "; VACUUM ANALYZE;")
            print(f"search indexes built in {time.perf_counter() - started:.0f} s", flush=True)
            cli("users", "add", "--tenant", TENANT, "--username", "sales", "--role", "sales", "--password-stdin",
                stdin=PASSWORD + "\n")
            try:
                # Any free metrics port too: another `serve` on the machine may hold the default.
                server = Server(env, workdir / "serve.log", None, ("--metrics-port", "0"))
            except SystemExit:
                print((workdir / "serve.log").read_text()[-3000:], file=sys.stderr)
                raise
            try:
                rows, failures = asyncio.run(run(server.base_url, args, url))
            finally:
                server.stop()
        finally:
            db_server.stop()
    print()
    print(markdown(rows, args))
    if failures:
        print("\nFAILED:\n" + "\n".join(failures[:20]), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
