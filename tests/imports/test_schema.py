"""`consentry db init` from an empty database gives the imports what they rely on."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect

from engine.db.session import make_engine
from tests.cli import ok


def _unique_keys(url: str) -> dict[str, set[tuple[str, ...]]]:
    async def go():
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                def read(sync_conn):
                    inspector = inspect(sync_conn)
                    return {
                        table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
                        for table in ("contacts", "contact_points", "tenants")
                    }

                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_migrations_from_empty_are_idempotent_and_carry_the_upsert_keys(db_url):
    first = ok("db", "init", "--db", db_url)
    again = ok("db", "init", "--db", db_url)
    assert first.out == again.out
    keys = _unique_keys(db_url)
    # The imports upsert on these (ON CONFLICT needs a unique constraint on exactly them).
    assert ("tenant_id", "external_id") in keys["contacts"]
    assert ("tenant_id", "contact_id", "kind") in keys["contact_points"]
