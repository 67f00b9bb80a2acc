"""Fixtures for the import tests: a database with the schema and two tenants, files to import,
and a way to read tables back.

Every test drives the real command line (tests.cli) against a real database (`db_url`:
SQLite and PostgreSQL) and reads the result back with SQLAlchemy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.db.session import make_engine
from tests.cli import Result, consentry, ok

TENANT = """\
tenant: {code}
name: {code}
country: {country}
timezone: {timezone}
classes:
  marketing: {{mode: opt_out}}
  service: {{mode: opt_out}}
  transactional: {{mode: exempt}}
"""

CONTACTS_HEADER = "external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at"
EVENTS_HEADER = "external_id,action,channel,class,party,address,method,occurred_at,actor,basis,note"

# What an import may change; compared whole before and after a failed one.
TABLES = {
    "contacts": "SELECT * FROM contacts ORDER BY id",
    "contact_points": "SELECT * FROM contact_points ORDER BY id",
    "consent_events": "SELECT * FROM consent_events ORDER BY id",
}


def query(url: str, sql: str, **params) -> list[tuple]:
    async def run() -> list[tuple]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(text(sql), params)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


@dataclass
class Workspace:
    """A database with the schema and tenants `acme` (US, Los Angeles) and `globex` (GB)."""

    url: str
    directory: Path

    def file(self, name: str, content: str) -> Path:
        path = self.directory / name
        path.write_text(content, encoding="utf-8")
        return path

    def contacts_file(self, *rows: str, name: str = "contacts.csv", header: str = CONTACTS_HEADER) -> Path:
        return self.file(name, "\n".join([header, *rows]) + "\n")

    def events_file(self, *rows: str, name: str = "events.csv", header: str = EVENTS_HEADER) -> Path:
        return self.file(name, "\n".join([header, *rows]) + "\n")

    def run(self, *args: object) -> Result:
        return consentry(*map(str, args), "--db", self.url)

    def ok(self, *args: object) -> Result:
        return ok(*map(str, args), "--db", self.url)

    def import_contacts(self, path: Path, tenant: str = "acme", *options: object) -> Result:
        return self.run("contacts", "import", path, "--tenant", tenant, *options)

    def import_events(self, path: Path, tenant: str = "acme", *options: object) -> Result:
        return self.run("consent", "import", path, "--tenant", tenant, *options)

    def query(self, sql: str, **params) -> list[tuple]:
        return query(self.url, sql, **params)

    def snapshot(self) -> dict[str, list[tuple]]:
        return {table: self.query(sql) for table, sql in TABLES.items()}

    def contact(self, external_id: str, tenant: str = "acme") -> dict:
        rows = self.query(
            "SELECT c.* FROM contacts c JOIN tenants t ON t.id = c.tenant_id"
            " WHERE t.code = :tenant AND c.external_id = :external_id",
            tenant=tenant,
            external_id=external_id,
        )
        assert len(rows) == 1, rows
        columns = ["id", "tenant_id", "external_id", "first_name", "last_name", "timezone", "country",
                   "region", "lead_source", "opted_out", "opted_out_changed_at_us", "reviewed_at_us",
                   "created_at_us", "updated_at_us"]
        return dict(zip(columns, rows[0], strict=True))

    def points(self, external_id: str, tenant: str = "acme") -> dict[str, tuple]:
        """kind -> (address, is_valid, zones)"""
        rows = self.query(
            "SELECT p.kind, p.address, p.is_valid, p.zones FROM contact_points p"
            " JOIN contacts c ON c.tenant_id = p.tenant_id AND c.id = p.contact_id"
            " JOIN tenants t ON t.id = c.tenant_id"
            " WHERE t.code = :tenant AND c.external_id = :external_id",
            tenant=tenant,
            external_id=external_id,
        )
        return {kind: (address, bool(valid), zones) for kind, address, valid, zones in rows}

    def events(self, external_id: str, tenant: str = "acme") -> list[tuple]:
        """(action, channel, class_code, party, address, method, occurred_at_us), in ledger order."""
        return self.query(
            "SELECT e.action, e.channel, e.class_code, e.party, e.address, e.method, e.occurred_at_us"
            " FROM consent_events e JOIN contacts c ON c.tenant_id = e.tenant_id AND c.id = e.contact_id"
            " JOIN tenants t ON t.id = e.tenant_id"
            " WHERE t.code = :tenant AND c.external_id = :external_id ORDER BY e.id",
            tenant=tenant,
            external_id=external_id,
        )


@pytest.fixture
def workspace(db_url: str, tmp_path: Path) -> Workspace:
    space = Workspace(db_url, tmp_path)
    space.ok("db", "init")
    for code, country, timezone in (("acme", "US", "America/Los_Angeles"), ("globex", "GB", "Europe/London")):
        tenant = space.file(f"{code}.yaml", TENANT.format(code=code, country=country, timezone=timezone))
        space.ok("tenant", "apply", tenant)
    return space
