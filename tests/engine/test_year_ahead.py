"""The whole job a year from now: import, check, send, export through the library API with
the one clock moved 365 days ahead. Nothing may read the wall clock behind the clock's back:
if it did, the opt-out that `contacts import` records would be dated today, a year before
the gating instant, and would still hold; but a send's rows, caps and blocks would be
stamped today and a replay a year ahead would not see them.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.definition import load_campaign
from campaigns.tenant_file import load_tenant_file
from engine.clock import offset_clock, system_clock
from engine.config import Settings
from engine.db.migrate import upgrade
from engine.db.session import make_engine
from engine.db.tenants import apply_policy
from engine.gate.check import check_campaign
from engine.imports import import_consent_events, import_contacts
from engine.send.pipeline import SendOptions
from engine.send.report import export
from engine.send.runner import launch_campaign, run_campaign
from engine.timeutil import to_us
from tests.engine.scenario import (
    EMAIL_CAMPAIGN,
    SMS_CAMPAIGN,
    TENANT,
    contacts_csv,
    events_csv,
    scenario_at,
)

YEAR = timedelta(days=365)
US = 1_000_000


@pytest.fixture
def year_ahead():
    """The clock a year ahead, and the scenario's gating instant (18:00Z the day after its today)."""
    clock = offset_clock(int(YEAR.total_seconds() * US))
    today = datetime.fromtimestamp(clock() / US, UTC)
    return clock, scenario_at(today)


async def _scenario(db: str, tmp_path, clock, at: datetime) -> tuple:  # noqa: ANN001
    tenant_yaml, contacts, events = tmp_path / "tenant.yaml", tmp_path / "contacts.csv", tmp_path / "events.csv"
    tenant_yaml.write_text(TENANT.format(tenant="acme-motors", enforce="false"))
    contacts.write_text(contacts_csv(at))
    events.write_text(events_csv(at))
    (tmp_path / "email.yaml").write_text(EMAIL_CAMPAIGN.format(tenant="acme-motors"))
    (tmp_path / "sms.yaml").write_text(SMS_CAMPAIGN.format(tenant="acme-motors"))
    engine = make_engine(db)
    await upgrade(engine)
    policy, source = load_tenant_file(str(tenant_yaml))
    async with engine.begin() as conn:
        await apply_policy(conn, policy, source, clock)
    await import_contacts(engine, str(contacts), "acme-motors", clock=clock, workers=1)
    await import_consent_events(engine, str(events), "acme-motors", clock=clock, workers=1)
    return engine


async def _send(engine, path, clock, at_us: int):  # noqa: ANN001, ANN202
    from engine.clock import shifted_clock

    definition = load_campaign(str(path))
    # `campaign send --at AT`: the gating clock starts at AT (later than the clock's now).
    send_clock = shifted_clock(at_us, clock)
    record, tenant = await launch_campaign(engine, definition, send_clock)
    report = await check_campaign(engine, definition, tenant, at_us)
    result = await run_campaign(
        engine, record, tenant, Settings.from_environ(), SendOptions(concurrency=4, claim_ttl_s=30),
        clock=send_clock, lease_clock=clock,
    )
    out = io.StringIO()
    await export(engine, record, out)
    return report, result, {row["external_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}


def test_the_whole_job_a_year_ahead(tmp_path, sqlite_url, capture, year_ahead):
    clock, at = year_ahead
    at_us = to_us(at)
    assert at_us - system_clock() > 364 * 86_400 * US  # the scenario really is a year ahead

    async def _job():  # noqa: ANN202
        engine = await _scenario(sqlite_url, tmp_path, clock, at)
        try:
            email = await _send(engine, tmp_path / "email.yaml", clock, at_us)
            sms = await _send(engine, tmp_path / "sms.yaml", clock, at_us)
            # A replay of the SMS campaign's check at the same instant sees what the send did:
            # S1 got its text at AT, and the cap (1 a day) now holds it back.
            definition = load_campaign(str(tmp_path / "sms.yaml"))
            _record, tenant = await launch_campaign(engine, definition, clock)
            out = io.StringIO()
            await check_campaign(engine, definition, tenant, at_us + 60 * US, out=out)
            replay = {row["external_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
            # A month before AT (still eleven months after the wall clock's today) E7 had not
            # opted out yet: the import dated the opt-out on the injected clock, not today.
            definition = load_campaign(str(tmp_path / "email.yaml"))
            out = io.StringIO()
            await check_campaign(engine, definition, tenant, at_us - 30 * 86_400 * US, out=out)
            month_before = {row["external_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
            return email, sms, replay, month_before
        finally:
            await engine.dispose()

    (email_check, email_result, email_rows), (_sms_check, sms_result, sms_rows), replay, month_before = asyncio.run(_job())

    # The check and the send agree, and E7's opt-out (recorded by the import, "now") holds.
    assert {k: (r["decision"], r["reason"]) for k, r in email_rows.items()} == {
        "E1": ("send", ""), "E2": ("suppress", "no_address"), "E3": ("suppress", "invalid_address"),
        "E4": ("suppress", "do_not_contact"), "E5": ("send", ""), "E6": ("suppress", "duplicate_address"),
        "E7": ("suppress", "opted_out"), "E8": ("suppress", "consent_revoked"), "E9": ("send", ""),
    }
    assert sum(n for (d, _r), n in email_check.counts.items() if d == "send") == 3
    assert sorted(m["to"] for m in capture.smtp.messages) == ["ava@example.com", "family@example.com", "mia@example.com"]
    assert email_result.outcomes["sent"] == 3 and sum(email_result.outcomes.values()) == email_result.total == 9
    # Every row the send recorded is stamped on the send's clock: at AT, a year ahead.
    for row in email_rows.values():
        if row["state"] == "sent":
            sent_at = datetime.fromisoformat(row["sent_at"].replace("Z", "+00:00"))
            assert timedelta(0) <= sent_at - at < timedelta(minutes=5)

    assert sms_rows["S1"]["outcome"] == "sent"
    assert sms_rows["S2"]["outcome"] == "opt_in_request"  # the opt-in request went in its place
    assert sms_rows["S5"]["state"] == "deferred"  # 03:00 in Tokyo
    assert sms_result.outcomes["sent"] == 1 and sms_result.outcomes["opt_in_request"] == 1
    assert sum(sms_result.outcomes.values()) == sms_result.total == 7
    assert replay["S1"]["reason"] == "frequency_capped"
    assert month_before["E7"]["decision"] == "send"
