"""One consent model: what the preference centre shows ticked is what a send decides.

For random policies and random grant/revoke ledgers (any channel, class or party, `*` or
missing, at the contact's address, at an old address or for the person, some dated after
now), each box of the preference centre (engine/api/choices.py, what /p/{token} renders)
must equal the decision of a campaign's own path: the batch loader (engine/db/batches.py)
and gating's BatchEvaluator, for a bulk message of that class and party on that channel.
Both read one real SQLite database; nothing else can suppress here (valid addresses, no
blocks, caps, quiet hours or review), so "ticked" and "sent" must agree exactly.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from campaigns.definition import Audience
from campaigns.tenant_file import parse_tenant_text
from engine.api.choices import load_choices
from engine.api.recipients import Recipient
from engine.db.batches import iter_batches
from engine.db.migrate import upgrade
from engine.db.models import Contact, ContactPoint
from engine.db.session import make_engine
from engine.db.tenants import apply_policy
from engine.imports import record_events
from gating import BatchEvaluator, Message, Send, compile_policy

NOW = 1_800_000_000_000_000  # the instant both readers are asked about
DAY = 86_400_000_000
EMAIL, OTHER_EMAIL, PHONE = "ava@example.com", "old@example.com", "+12135550101"
CHANNELS = ("email", "sms")

modes = st.sampled_from(["opt_in", "opt_out", "exempt", None])
policies = st.fixed_dictionaries({
    "regime": st.sampled_from(["opt_in", "opt_out"]),
    "classes": st.fixed_dictionaries({"marketing": modes, "service": modes}),
    "reauthorization_days": st.sampled_from([{}, {"email": 30}, {"sms": 365}]),
})
events = st.lists(
    st.fixed_dictionaries({
        "action": st.sampled_from(["grant", "revoke"]),
        "channel": st.sampled_from(["email", "sms", "voice", "*", None]),
        "class_code": st.sampled_from(["marketing", "service", "*", None]),
        "party": st.sampled_from(["first", "third", "*", None]),
        "address": st.sampled_from([None, EMAIL, OTHER_EMAIL, PHONE]),
        # Days before NOW; negative: dated in the future, not yet in force.
        "days_ago": st.integers(min_value=-3, max_value=60),
    }),
    max_size=8,
)


def _tenant_yaml(code: str, policy: dict) -> str:
    classes = {name: ({} if mode is None else {"mode": mode}) for name, mode in policy["classes"].items()}
    if all(spec.get("mode") == "exempt" for spec in classes.values()):
        classes["marketing"] = {}
    return yaml.safe_dump({
        "tenant": code, "name": "Acme", "regime": policy["regime"], "timezone": "UTC", "classes": classes,
        "reauthorization_days": policy["reauthorization_days"],
    })


class World:
    """One SQLite database; each example gets a tenant of its own."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(f"sqlite+aiosqlite:///{path}")
        self.loop.run_until_complete(upgrade(self.engine))
        self.codes = (f"t{n}" for n in itertools.count())

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()

    async def example(self, policy: dict, ledger: list[dict]) -> None:
        code = next(self.codes)
        async with self.engine.begin() as conn:
            tenant, _ = await apply_policy(conn, parse_tenant_text(_tenant_yaml(code, policy)), "", lambda: NOW)
            contact_id = (await conn.execute(insert(Contact).values(
                tenant_id=tenant.id, external_id="C1", first_name="Ava", created_at_us=NOW, updated_at_us=NOW,
            ).returning(Contact.id))).scalar_one()
            await conn.execute(insert(ContactPoint), [
                {"tenant_id": tenant.id, "contact_id": contact_id, "kind": "email", "address": EMAIL,
                 "is_valid": True, "updated_at_us": NOW},
                {"tenant_id": tenant.id, "contact_id": contact_id, "kind": "phone", "address": PHONE,
                 "is_valid": True, "updated_at_us": NOW},
            ])
            await record_events(conn, tenant.id, [
                {"contact_id": contact_id, "action": e["action"], "channel": e["channel"], "class_code": e["class_code"],
                 "party": e["party"], "address": e["address"], "method": "test",
                 "occurred_at_us": NOW - e["days_ago"] * DAY}
                for e in ledger
            ], recorded_at_us=NOW)

        recipient = Recipient(tenant, contact_id, "C1", "Ava", "email", EMAIL, None)
        async with self.engine.connect() as conn:
            shown = {(c.channel, c.class_code, c.party): c.consented
                     for c in await load_choices(conn, recipient, NOW, CHANNELS)}

        decided = {}
        for channel, class_code, party in shown:
            message = Message("bulk", channel, class_code, party)
            evaluator = BatchEvaluator(compile_policy(tenant.policy, message), message)
            async for batch in iter_batches(self.engine, tenant.id, channel, Audience(), NOW):
                (decision,) = evaluator.evaluate(batch.contacts, batch.ledger, batch.recent_sends, batch.now_us)
                decided[(channel, class_code, party)] = isinstance(decision, Send)
        assert shown == decided
        # Every choosable class and party is on the page, for each channel.
        choosable = [code for code, mode in tenant.policy.classes.items() if mode != "exempt"]
        assert sorted(shown) == sorted(itertools.product(CHANNELS, choosable, ("first", "third")))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    world = World(tmp_path_factory.mktemp("preferences") / "consentry.db")
    yield world
    world.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=policies, ledger=events)
def test_the_preference_centre_ticks_exactly_what_gating_sends(world: World, policy: dict, ledger: list[dict]) -> None:
    world.loop.run_until_complete(world.example(policy, ledger))
