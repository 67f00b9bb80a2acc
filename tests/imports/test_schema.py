"""`consentry db init` from an empty database gives the imports what they rely on."""

from __future__ import annotations

import asyncio

import pytest
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


def _insert_point(url: str, tenant_id: int, contact_id: int) -> None:
    """Insert one email point for (tenant_id, contact_id) in its own transaction."""
    from sqlalchemy import insert

    from engine.db.models import ContactPoint

    async def go():
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(ContactPoint).values(
                    tenant_id=tenant_id, contact_id=contact_id, kind="email", address="a@example.com",
                    is_valid=True, zones=None, updated_at_us=1))
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_a_point_belongs_to_a_contact_of_its_own_tenant(db_url):
    """contact_points -> contacts (tenant_id, id) (migration 0014): a point naming another
    tenant's contact, or a contact that does not exist, is refused by the database itself."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from engine.db.models import Contact, Tenant

    ok("db", "init", "--db", db_url)

    async def seed() -> tuple[int, int, int]:
        engine = make_engine(db_url)
        try:
            async with engine.begin() as conn:
                tenants = []
                for code in ("north", "south"):
                    tenant = await conn.execute(insert(Tenant).values(code=code, name=code, created_at_us=1)
                                                .returning(Tenant.id))
                    tenants.append(tenant.scalar_one())
                contact = await conn.execute(insert(Contact).values(
                    tenant_id=tenants[0], external_id="C1", created_at_us=1, updated_at_us=1).returning(Contact.id))
                return tenants[0], tenants[1], contact.scalar_one()
        finally:
            await engine.dispose()

    north, south, contact_id = asyncio.run(seed())
    with pytest.raises(IntegrityError):
        _insert_point(db_url, south, contact_id)  # the contact is north's
    with pytest.raises(IntegrityError):
        _insert_point(db_url, north, contact_id + 1)  # no such contact
    _insert_point(db_url, north, contact_id)

    async def foreign_keys():
        engine = make_engine(db_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: inspect(sync).get_foreign_keys("contact_points"))
        finally:
            await engine.dispose()

    keys = asyncio.run(foreign_keys())
    assert [(key["constrained_columns"], key["referred_table"], key["referred_columns"]) for key in keys] == [
        (["tenant_id", "contact_id"], "contacts", ["tenant_id", "id"])
    ]
