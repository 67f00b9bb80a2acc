"""What carbon-copy sync (engine/imports/carbon_copy.py) costs a batch of ledger writes.

    .venv/bin/python -m bench.bench_carbon_copy --db sqlite
    .venv/bin/python -m bench.bench_carbon_copy --db postgres

Two tenants of `--contacts` contacts each: one links nobody, the other links every contact
to one other (pairs). For each, a batch of 4,000 `opt_out` events (an import chunk) is
passed to `with_carbon_copies` alone (best of 5) and then written with
`record_event_rows` (inside a transaction that is rolled back). Reported: milliseconds for
the lookup, the copies it adds, and the write of the batch with its copies. Figures in
docs/imports.md ("Linked contacts").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from engine.db.migrate import upgrade
from engine.db.models import Contact, ContactLink, Tenant
from engine.db.session import make_engine
from engine.imports.carbon_copy import with_carbon_copies
from engine.imports.ledger import record_event_rows

BATCH = 4000


async def measure(url: str, contacts: int) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            for tenant_id, code in ((1, "plain"), (2, "linked")):
                await conn.execute(insert(Tenant.__table__), [
                    {"id": tenant_id, "code": code, "name": code, "policy_version": 0, "created_at_us": 0}])
                await conn.execute(insert(Contact.__table__), [
                    {"tenant_id": tenant_id, "external_id": f"X{i}", "opted_out": False, "created_at_us": 0,
                     "updated_at_us": 0} for i in range(contacts)])
            await conn.execute(insert(ContactLink.__table__), [
                {"tenant_id": 2, "contact_a": contacts + i, "contact_b": contacts + i + 1, "kind": "household",
                 "created_at_us": 0} for i in range(1, contacts, 2)])
            if url.startswith("postgresql"):
                await conn.exec_driver_sql("ANALYZE")
        for tenant_id, first_id, label in ((1, 1, "without links"), (2, contacts + 1, "every contact linked")):
            rows = [(tenant_id, first_id + (i * 7) % contacts, "opt_out", None, None, None, None, "bench", 1, 1,
                     None, None, None, None, None, None, None) for i in range(BATCH)]
            async with engine.begin() as conn:
                best, copies = float("inf"), 0
                for _ in range(5):
                    start = time.perf_counter()
                    out = await with_carbon_copies(conn, rows)
                    best = min(best, time.perf_counter() - start)
                    copies = len(out) - len(rows)
                start = time.perf_counter()
                await record_event_rows(conn, rows)
                written = time.perf_counter() - start
                await conn.rollback()
            print(f"{engine.dialect.name} tenant {label}: lookup {best * 1000:.1f} ms for {BATCH} events, "
                  f"{copies} copies; writing them {written * 1000:.0f} ms")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.db == "sqlite":
            asyncio.run(measure(f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}", args.contacts))
            return
        from tests.servers import PostgresServer

        Path(directory).chmod(0o777)  # the server runs as the postgres user
        with PostgresServer(Path(directory)) as server:
            asyncio.run(measure(server.url(), args.contacts))


if __name__ == "__main__":
    main()
