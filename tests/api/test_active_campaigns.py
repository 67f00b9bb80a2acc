"""The active-campaigns gauge counts campaigns with recipients ready to send, from the
database: the stalled-campaign alert is blind to any it leaves out."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from engine.api.active_campaigns import count_active
from engine.db.session import make_engine
from tests.engine.scenario import build

NOW = 1_800_000_000_000_000
CAMPAIGN = (
    "insert into campaigns (tenant_id, code, kind, channel, class_code, party, definition_json, templates_json,"
    " policy_version, status, created_at_us, updated_at_us) values"
    " (1, :code, 'bulk', :channel, 'marketing', 'first', '{}', '{}', 1, :status, 0, 0)"
)
DEFERRED = (
    "insert into deliveries (tenant_id, campaign_id, contact_id, channel, kind, purpose, decision, reason,"
    " defer_until_us, state, attempts, created_at_us, updated_at_us)"
    " select 1, id, (select min(id) from contacts), channel, 'bulk', 'campaign', 'defer', 'quiet_hours',"
    " :until, 'deferred', 0, 0, 0 from campaigns where code = :code"
)


def test_campaigns_with_recipients_ready_are_counted_per_tenant_and_channel(tmp_path, db_url):
    build(tmp_path, db_url, enforce_review=False)
    campaigns = [
        ("running", "sms", None),
        ("incomplete", "sms", None),  # a relay failure or a stop left recipients pending
        ("incomplete", "email", None),
        ("waiting", "email", NOW - 1),  # quiet hours are over: due, waiting for a resume
        ("waiting", "sms", NOW + 60_000_000),  # still in quiet hours: nothing may be sent
        ("paused", "sms", None),  # an operator's decision, not a stall
        ("finished", "email", None),
        ("draft", "email", None),
        ("cancelled", "sms", None),
    ]

    async def scenario():
        engine = make_engine(db_url)
        try:
            before = await count_active(engine, NOW)
            async with engine.begin() as conn:
                for number, (status, channel, until) in enumerate(campaigns):
                    code = f"c{number}"
                    await conn.execute(text(CAMPAIGN), {"code": code, "channel": channel, "status": status})
                    if until is not None:
                        await conn.execute(text(DEFERRED), {"code": code, "until": until})
            return before, await count_active(engine, NOW), await count_active(engine, NOW + 120_000_000)
        finally:
            await engine.dispose()

    before, now, later = asyncio.run(scenario())
    assert before == {}
    assert now == {("acme-motors", "sms"): 2, ("acme-motors", "email"): 2}
    # Once the second deferral is due as well, that campaign counts too.
    assert later == {("acme-motors", "sms"): 3, ("acme-motors", "email"): 2}
