"""A carbon copy onto a linked contact reaches the tenant's webhook receiver, saying where
it came from (seed 004 and the outbound webhooks together)."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api
from tests.api.test_linked_contacts import ONE_CLICK, _add_contact, _link
from tests.webhooks.conftest import dispatching, eventually, outbox, register


async def test_a_copied_revoke_is_pushed_with_linked_from(api: Api, receivers, tmp_path: Path) -> None:
    await _add_contact(api, tmp_path, "acme-motors", "C5,Mia,Smith,ava@example.com,,America/Los_Angeles,US,,Website,,")
    await _link(api, tmp_path, "acme-motors", "C1,C5,household")
    receiver = receivers(name="revokes")
    hook = await register(api, receiver.url, ["consent.revoke"])
    receiver.start(hook["secret"])

    async with dispatching(api):
        token = await api.token("acme-motors", "C1")
        async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
            assert response.status == 200

        async def both_delivered() -> bool:
            rows = await outbox(api, hook["id"])
            return len(rows) == 2 and all(row["state"] == "delivered" for row in rows)

        await eventually(both_delivered, what="the revoke and its copy")

    received = {event["data"]["contact"]["external_id"]: event["data"] for event in receiver.events()}
    assert received["C1"]["linked_from"] is None
    assert received["C5"]["linked_from"] == {"external_id": "C1"}
    assert received["C5"]["source"] == received["C1"]["source"] == "unsubscribe_link"
    assert received["C5"]["address"] == "ava@example.com"
