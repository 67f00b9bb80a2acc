"""The desk on the real service (tests/api/conftest.py's `api`: SQLite and PostgreSQL, two
tenants, their contacts and a key per role), plus a desk user per tenant and role, all with
one password, and browser-like clients that keep cookies."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiohttp
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import DeskUser
from engine.db.tenants import TenantRecord
from engine.desk.passwords import hash_password
from tests.api.conftest import CLOCK, ROLES, Api, api, api_sink  # noqa: F401 - fixtures used here

PASSWORD = "correct horse battery staple"
# scrypt is slow on purpose (tens of ms): one digest for every test user, computed once.
_PASSWORD_HASH = hash_password(PASSWORD)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Desk:
    api: Api
    clients: list[aiohttp.ClientSession] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.api.url(path)

    def client(self) -> aiohttp.ClientSession:
        """A new browser: its own cookie jar (which keeps cookies of 127.0.0.1 too)."""
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30)
        )
        self.clients.append(session)
        return session

    async def signed_in(self, tenant: str, role: str) -> aiohttp.ClientSession:
        """A browser signed in as the desk user `role` of `tenant`."""
        browser = self.client()
        async with browser.post(self.url("/desk/sign-in"), data={
            "tenant": tenant, "username": role, "password": PASSWORD, "next": "/desk",
        }, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
        return browser

    async def csrf(self, browser: aiohttp.ClientSession, path: str) -> str:
        """The CSRF token in the forms of a page the browser opens."""
        async with browser.get(self.url(path)) as response:
            found = _CSRF.search(await response.text())
        assert found, f"no form with a csrf_token on {path}"
        return found.group(1)


async def add_users(conn: AsyncConnection, tenants: Mapping[str, TenantRecord]) -> None:
    """A desk user per tenant and role, named after the role, all with PASSWORD (the rows
    `consentry users add` writes; tests/desk/test_sign_in.py runs that command itself)."""
    await conn.execute(insert(DeskUser.__table__), [
        {"tenant_id": record.id, "username": role, "password_hash": _PASSWORD_HASH, "role": role,
         "created_at_us": CLOCK()}
        for record in tenants.values() for role in ROLES
    ])


@contextlib.asynccontextmanager
async def desk_on(service_api: Api) -> AsyncIterator[Desk]:
    """The desk of a running API service, with its test users; closes its browsers' sessions."""
    async with service_api.engine.begin() as conn:
        await add_users(conn, service_api.tenants)
    service = Desk(service_api)
    try:
        yield service
    finally:
        for client in service.clients:
            await client.close()


@pytest.fixture
async def desk(api: Api) -> AsyncIterator[Desk]:  # noqa: F811 - the imported fixture
    async with desk_on(api) as service:
        yield service
