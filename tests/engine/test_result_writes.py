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


def _writer_scenario(sqlite_url: str, in_flight: int, window_s: float, arrivals: list[float]) -> tuple[list[int], list[tuple]]:
    """Results of rows 1..n handed to a ResultWriter at `arrivals` (seconds after the first),
    `in_flight` messages being out; returns the size of each commit and the rows after."""
    from prometheus_client import CollectorRegistry

    from engine.db.states import DeliveryState, Purpose
    from engine.send.content import Job
    from engine.send.pipeline import RunSummary
    from engine.send.results import Result, ResultWriter
    from metrics import Instruments

    ok("db", "init", "--db", sqlite_url)
    path = sqlite_url.split(":///", 1)[1]
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA foreign_keys=OFF")
    for n in range(1, len(arrivals) + 1):
        setup.execute(INSERT, (n, n, f"c{n}@example.com", 7))
    commits: list[int] = []

    async def run() -> None:
        engine = make_engine(sqlite_url)
        claims = Claimant(engine, lambda: 0, campaign_id=1, ttl_s=30)
        claims.token = 7
        writer = ResultWriter(
            engine, claims, 1, "acme", "email", lambda: 5, Instruments(CollectorRegistry()), RunSummary(),
            asyncio.Lock(), lambda event, n: commits.append(n) if event == "delivered" else None,
            in_flight=lambda: in_flight, window_s=window_s,
        )
        await writer.open()
        task = asyncio.create_task(writer.run())

        async def hand_over(n: int, after: float) -> None:
            await asyncio.sleep(after)
            job = Job(n, n, f"C{n}", f"c{n}@example.com", Purpose.CAMPAIGN)
            await writer.record(job, Result(DeliveryState.SENT, provider_id=f"<m{n}@acme.example>"))

        try:
            await asyncio.wait_for(
                asyncio.gather(*(hand_over(n, after) for n, after in enumerate(arrivals, start=1))), timeout=30)
        finally:
            writer.stop()
            await task
            await writer.close()
            await engine.dispose()

    asyncio.run(run())
    rows = setup.execute("SELECT id, state FROM deliveries ORDER BY id").fetchall()
    setup.close()
    return commits, rows


def test_results_arriving_apart_are_committed_together_once_every_message_out_has_reported(sqlite_url: str) -> None:
    # Three messages out, their replies 50 ms apart: one commit when the third arrives,
    # long before the (here 20 s) window would have run out.
    commits, rows = _writer_scenario(sqlite_url, in_flight=3, window_s=20.0, arrivals=[0.0, 0.05, 0.1])
    assert commits == [3]
    assert rows == [(1, "sent"), (2, "sent"), (3, "sent")]


def test_a_result_whose_companions_are_late_is_committed_when_the_window_ends(sqlite_url: str) -> None:
    # Four messages out, one reply: it waits 50 ms for the others, then is committed alone.
    commits, rows = _writer_scenario(sqlite_url, in_flight=4, window_s=0.05, arrivals=[0.0])
    assert commits == [1]
    assert rows == [(1, "sent")]
