"""The active-campaigns gauge counts campaigns that are sending, from the database."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from engine.api.active_campaigns import count_active
from engine.db.session import make_engine
from tests.engine.scenario import build

INSERT = (
    "insert into campaigns (tenant_id, code, kind, channel, class_code, party, definition_json, templates_json,"
    " policy_version, status, created_at_us, updated_at_us) values"
    " (1, 'c1', 'bulk', 'sms', 'marketing', 'first', '{}', '{}', 1, 'running', 0, 0),"
    " (1, 'c2', 'bulk', 'sms', 'marketing', 'first', '{}', '{}', 1, 'waiting', 0, 0)"
)


def test_running_campaigns_are_counted_per_tenant_and_channel(tmp_path, db_url):
    build(tmp_path, db_url, enforce_review=False)

    async def scenario():
        engine = make_engine(db_url)
        try:
            before = await count_active(engine)
            async with engine.begin() as conn:
                await conn.execute(text(INSERT))
            return before, await count_active(engine)
        finally:
            await engine.dispose()

    before, after = asyncio.run(scenario())
    assert before == {}
    assert after == {("acme-motors", "sms"): 1}
