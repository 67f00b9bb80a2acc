"""Linked contacts over HTTP (seed 004): a one-click unsubscribe and a STOP text reach the
linked contacts that have that address, and nobody else, in the running service."""

from __future__ import annotations

from pathlib import Path

from engine.imports import import_contacts
from engine.imports.links import import_links
from tests.api.conftest import CLOCK, Api, inbound_sms

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
INBOUND = "/webhooks/twilio/acme-motors/inbound"
ACME_NUMBER = "+12135550100"
LIAM = "+12135550102"


async def _link(api: Api, tmp_path: Path, tenant: str, *rows: str) -> None:
    path = tmp_path / f"{tenant}-links.csv"
    path.write_text("external_id,linked_external_id,kind\n" + "\n".join(rows) + "\n", encoding="utf-8")
    await import_links(api.engine, str(path), tenant, actor="test", clock=CLOCK)


async def _add_contact(api: Api, tmp_path: Path, tenant: str, row: str) -> None:
    path = tmp_path / f"{tenant}-more.csv"
    path.write_text(
        "external_id,first_name,last_name,email,phone,timezone,country,region,lead_source,opted_out,reviewed_at\n"
        + row + "\n", encoding="utf-8")
    await import_contacts(api.engine, str(path), tenant, workers=0, clock=CLOCK)


def _summary(events: list[dict]) -> list[tuple]:
    return sorted((e["external_id"], e["action"], e["channel"], e["address"], e["linked_from"]) for e in events)


async def _explain(api: Api, external_id: str, channel: str) -> dict:
    url = api.url(f"/api/v1/contacts/{external_id}/explain?channel={channel}&class=marketing")
    async with api.session.get(url, headers=api.auth("acme-motors", "sales")) as response:
        assert response.status == 200
        return (await response.json())["decision"]


async def test_one_click_unsubscribe_is_copied_to_a_linked_contact_with_that_address(api: Api, tmp_path: Path) -> None:
    # C5 shares Ava's mailbox (a household); C4 is linked but has an address of his own.
    await _add_contact(api, tmp_path, "acme-motors", "C5,Mia,Smith,ava@EXAMPLE.com,,America/Los_Angeles,US,,Website,,")
    await _link(api, tmp_path, "acme-motors", "C1,C5,household", "C1,C4,billing")
    assert (await _explain(api, "C5", "email"))["decision"] == "send"

    token = await api.token("acme-motors", "C1")
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
        assert response.status == 200
    assert _summary(await api.events()) == [
        ("C1", "revoke", "email", "ava@example.com", None),
        ("C5", "revoke", "email", "ava@example.com", "C1"),
    ]
    assert (await _explain(api, "C5", "email"))["reason"] == "consent_revoked"
    assert (await _explain(api, "C4", "email"))["decision"] == "send"
    # The second click records nothing, on either contact.
    async with api.session.post(api.url(f"/u/{token}"), data=ONE_CLICK) as response:
        assert response.status == 200
    assert len(await api.events()) == 2


async def test_a_stop_reaches_each_holder_of_the_number_once_and_stays_in_its_tenant(api: Api, tmp_path: Path) -> None:
    # C2 and C3 share Liam's number and are linked; C4 (no phone) is linked to C2.
    await _link(api, tmp_path, "acme-motors", "C2,C3,household", "C2,C4,billing")
    # Bravo's own C1 and B1 (Ava's number) are linked, in Bravo.
    await _link(api, tmp_path, "bravo-cars", "B1,C1,household")

    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, LIAM, "STOP")) as response:
        assert response.status == 200
    # Both holders of the number get the block as an original; neither gets a copy as well.
    assert _summary(await api.events()) == [
        ("C2", "block", "sms", LIAM, None),
        ("C3", "block", "sms", LIAM, None),
    ]
    assert (await _explain(api, "C4", "email"))["decision"] == "send"

    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, "(213) 555-0101", "STOP")) as response:
        assert response.status == 200
    assert await api.events("bravo-cars") == []
    assert [e["external_id"] for e in await api.events("acme-motors")][-1] == "C1"
