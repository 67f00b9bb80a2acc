"""The SQLite result write on the event loop's thread (engine/send/claims.py
`record_on_sqlite`): it waits for another writer's lock asleep, never blocking the loop,
and records only rows that still carry the runner's fencing token."""

from __future__ import annotations

import asyncio
import sqlite3

from engine.db.session import make_engine
from engine.send.claims import Claimant
from engine.send.results import open_direct
from tests.cli import ok

INSERT = (
    "INSERT INTO deliveries (id, tenant_id, campaign_id, contact_id, channel, kind, purpose, address, decision, state,"
    " attempts, created_at_us, updated_at_us, claim_token, claim_until_us) "
    "VALUES (?, 1, 1, ?, 'email', 'bulk', 'campaign', ?, 'send', 'sending', 1, 0, 0, ?, 10)"
)


def _sent(delivery_id: int) -> dict:
    return {"_id": delivery_id, "state": "sent", "provider_id": f"<m{delivery_id}@acme.example>", "segments": None,
            "error": None, "sent_at_us": 5, "updated_at_us": 5}


def test_a_result_waits_for_the_write_lock_asleep_and_keeps_the_fencing(sqlite_url: str) -> None:
    ok("db", "init", "--db", sqlite_url)
    path = sqlite_url.split(":///", 1)[1]
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA foreign_keys=OFF")  # the rows alone: the statement under test reads no other table
    setup.execute(INSERT, (1, 1, "ava@example.com", 7))  # ours (token 7)
    setup.execute(INSERT, (2, 2, "ben@example.com", 8))  # taken over by a later runner (token 8)

    async def record_while_locked() -> None:
        engine = make_engine(sqlite_url)
        claims = Claimant(engine, lambda: 0, campaign_id=1, ttl_s=30)
        claims.token = 7
        direct = open_direct(engine)
        assert direct is not None
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
            write = asyncio.create_task(claims.record_on_sqlite(direct, [_sent(1), _sent(2)]))
            await asyncio.sleep(0.2)  # the loop runs on meanwhile: the write sleeps, it does not block
            assert not write.done()
            blocker.execute("COMMIT")
            await asyncio.wait_for(write, timeout=10)
        finally:
            blocker.close()
            direct.close()
            await engine.dispose()

    asyncio.run(record_while_locked())
    rows = setup.execute("SELECT id, state, provider_id, claim_until_us FROM deliveries ORDER BY id").fetchall()
    setup.close()
    assert rows == [(1, "sent", "<m1@acme.example>", None), (2, "sending", None, 10)]


def test_no_direct_connection_for_an_in_memory_database() -> None:
    assert open_direct(make_engine("sqlite+aiosqlite:///:memory:")) is None
