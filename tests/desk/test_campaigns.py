"""The campaign pages of the desk, over HTTP, on SQLite and PostgreSQL.

The service sends for real to a capture SMTP server on the test's loop, with quick retries
so a recipient refused with a 4xx is left `pending` (the campaign `incomplete`) in well
under a second. Acme's contacts: C2 opted out of marketing and C3's email blocked before
the campaign, so an email marketing campaign sends to C1 and C4 and suppresses the others,
each with its reason.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from engine.db.models import Campaign, Contact, Delivery
from engine.inbound.feedback import DeliveryRef, record_bounce
from engine.inbound.reports import DsnRecipient
from engine.timeutil import iso_z
from tests.api.conftest import CLOCK, ROLES, service_with_relay
from tests.desk.conftest import Desk, desk_on

FORM = {
    "campaign": "spring-offer", "channel": "email", "kind": "bulk", "class": "marketing", "party": "first",
    "template": "spring_offer", "subject": "Your spring service offer", "sender_email": "service@acme.example",
    "sender_name": "Acme Service",
}
API_CAMPAIGN = {
    "campaign": "spring-offer", "kind": "bulk", "channel": "email", "class": "marketing", "template": "spring_offer",
    "subject": "Your spring service offer", "sender": {"email": "service@acme.example", "name": "Acme Service"},
}
_ROW = re.compile(r'<td class="state-(\w+)">\w+</td>\s*<td>(?:<a [^>]*>)?([\w—]+)(?:</a>)?</td>\s*'
                  r'<td class="number">([\d,]+)</td>')


@pytest.fixture
async def desk(db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    """tests/desk/conftest.py's service, sending to its own relay with quick retries."""
    async with service_with_relay(db_url, tmp_path) as api, desk_on(api) as service:
        yield service


async def _api(desk: Desk, method: str, path: str, role: str = "marketer", tenant: str = "acme-motors",
               body: dict | None = None) -> tuple[int, dict]:
    api = desk.api
    async with api.session.request(method, api.url(path), json=body, headers=api.auth(tenant, role)) as response:
        return response.status, await response.json()


async def _suppress_two(desk: Desk) -> None:
    """C2 opts out of marketing, C3's email is blocked: recorded a minute ago, as sales would."""
    occurred = iso_z(CLOCK() - 60_000_000)
    for external_id, event in (("C2", {"action": "opt_out"}), ("C3", {"action": "block", "channel": "email"})):
        status, body = await _api(desk, "POST", f"/api/v1/contacts/{external_id}/consent-events", "sales",
                                  body={**event, "method": "verbal", "occurred_at": occurred})
        assert status == 201, body


async def _status(desk: Desk, code: str = "spring-offer", settled: bool = True) -> dict:
    """The API's status, once no run is going (when `settled`)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status, body = await _api(desk, "GET", f"/api/v1/campaigns/{code}/status", "admin")
        assert status == 200, body
        if not settled or body["status"] != "running":
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def _get(browser: aiohttp.ClientSession, desk: Desk, path: str) -> tuple[int, str]:
    async with browser.get(desk.url(path), allow_redirects=False) as response:
        return response.status, await response.text()


async def _post(browser: aiohttp.ClientSession, desk: Desk, path: str, data: dict, token_from: str) -> tuple[int, str, str]:
    token = await desk.csrf(browser, token_from)
    async with browser.post(desk.url(path), data={**data, "csrf_token": token}, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


def _counts(page: str) -> dict[tuple[str, str], int]:
    """(decision, reason) → recipients, from the first counts table of a page."""
    table = page[page.index('<table class="counts">'):]
    table = table[:table.index("</table>")]
    return {(d, "" if r == "—" else r): int(n.replace(",", "")) for d, r, n in _ROW.findall(table)}


def _recipients(page: str) -> list[str]:
    table = page[page.index('<table class="recipients">'):]
    table = table[:table.index("</table>")]
    return re.findall(r'<th scope="row"><a href="/desk/contacts/(\w+)">', table)


async def test_each_role_sees_and_does_only_what_it_may(desk: Desk) -> None:
    assert (await _api(desk, "POST", "/api/v1/campaigns", body=API_CAMPAIGN))[0] == 201
    for role in ROLES:
        browser = await desk.signed_in("acme-motors", role)
        status, page = await _get(browser, desk, "/desk/campaigns")
        if role == "sales":
            assert status == 403 and "may not read campaigns" in page
            assert (await _get(browser, desk, "/desk/campaigns/spring-offer"))[0] == 403
            continue
        assert status == 200, role
        assert 'href="/desk/campaigns/spring-offer"' in page and "Not launched yet" in page
        writes = role != "viewer"
        assert ('href="/desk/campaigns/new"' in page) is writes, role
        status, page = await _get(browser, desk, "/desk/campaigns/spring-offer")
        assert status == 200
        # A draft may be launched or cancelled, not paused or resumed; a viewer sees no button.
        buttons = re.findall(r'action="/desk/campaigns/spring-offer/(\w+)"', page)
        assert buttons == (["launch", "cancel"] if writes else []), role
        assert ("Check who it will reach" in page) is writes
        assert (await _get(browser, desk, "/desk/campaigns/new"))[0] == (200 if writes else 403)
        assert (await _get(browser, desk, "/desk/campaigns/spring-offer/check"))[0] == (200 if writes else 403)
    viewer = await desk.signed_in("acme-motors", "viewer")
    status, _location, page = await _post(viewer, desk, "/desk/campaigns/spring-offer/launch", {},
                                          "/desk/campaigns/spring-offer")
    assert status == 403 and "may not run campaigns" in page
    assert (await _status(desk))["status"] == "draft"


async def test_another_tenants_campaign_is_not_found(desk: Desk) -> None:
    bravo = {**API_CAMPAIGN, "campaign": "bravo-only", "sender": {"email": "service@bravo.example"}}
    assert (await _api(desk, "POST", "/api/v1/campaigns", tenant="bravo-cars", body=bravo))[0] == 201
    browser = await desk.signed_in("acme-motors", "admin")
    assert "bravo-only" not in (await _get(browser, desk, "/desk/campaigns"))[1]
    for path in ("", "/check", "/deliveries.csv", "/recipients/B1"):
        status, page = await _get(browser, desk, f"/desk/campaigns/bravo-only{path}")
        assert status == 404 and "No such page" in page, path
    for action in ("launch", "cancel"):
        status, _location, _page = await _post(browser, desk, f"/desk/campaigns/bravo-only/{action}", {},
                                               "/desk/campaigns")
        assert status == 404, action
    status, body = await _api(desk, "GET", "/api/v1/campaigns/bravo-only/status", "admin", "bravo-cars")
    assert (status, body["status"]) == (200, "draft")


async def test_the_form_saves_a_draft_whose_check_is_the_apis(desk: Desk) -> None:
    await _suppress_two(desk)
    marketer = await desk.signed_in("acme-motors", "marketer")
    status, location, _page = await _post(marketer, desk, "/desk/campaigns/new", FORM, "/desk/campaigns/new")
    assert (status, location) == (303, "/desk/campaigns/spring-offer/check?done=created")
    status, page = await _get(marketer, desk, location)
    assert status == 200 and "Saved as a draft" in page
    api_status, api_check = await _api(desk, "POST", "/api/v1/campaigns/spring-offer/check")
    assert api_status == 200
    expected = {(c["decision"], c["reason"]): c["count"] for c in api_check["counts"]}
    assert _counts(page) == expected == {("send", ""): 2, ("suppress", "opted_out"): 1, ("suppress", "do_not_contact"): 1}
    # The chart says the same numbers in words, for those who cannot see the bars.
    assert 'role="img"' in page and "suppress · opted_out: 1 (25.0%)" in page
    # The draft is the API's: the same definition the API would have recorded.
    assert (await _api(desk, "POST", "/api/v1/campaigns", body=API_CAMPAIGN))[0] == 200
    # Sent twice (a double click), the form lands on the same draft.
    assert (await _post(marketer, desk, "/desk/campaigns/new", FORM, "/desk/campaigns/new"))[1] == location


async def test_bad_form_input_is_shown_beside_each_field_and_creates_nothing(desk: Desk) -> None:
    marketer = await desk.signed_in("acme-motors", "marketer")
    bad = {**FORM, "campaign": "Spring Offer!", "channel": "sms", "template": "live_lead", "class": "gossip",
           "subject": "", "sender_email": "", "sender_name": "", "rate_per_second": "fast"}
    status, _location, page = await _post(marketer, desk, "/desk/campaigns/new", bad, "/desk/campaigns/new")
    assert status == 422
    errors = dict(re.findall(r'<p class="error field-error" id="([\w]+)-error">([^<]+)</p>', page))
    assert set(errors) == {"campaign", "rate_per_second"}, errors
    assert "should match pattern" in errors["campaign"] and "valid number" in errors["rate_per_second"]
    # Each input points at its message; what was typed is kept.
    assert re.search(r'id="campaign"[^>]*value="Spring Offer!"[^>]*aria-describedby="campaign-error[^"]*"', page)
    assert 'value="fast"' in page
    # Once the structure is right, the checks against the tenant's policy speak (as the API's do).
    fixed = {**bad, "campaign": "spring-texts", "rate_per_second": "2", "sender_phone": "+15550001111"}
    status, _location, page = await _post(marketer, desk, "/desk/campaigns/new", fixed, "/desk/campaigns/new")
    assert status == 422
    assert re.findall(r'id="([\w]+)-error"', page) == ["class"]
    assert "not in tenant" in page
    status, _location, page = await _post(marketer, desk, "/desk/campaigns/new", {**FORM, "sender_email": "",
                                          "subject": ""}, "/desk/campaigns/new")
    assert status == 422 and re.findall(r'id="([\w]+)-error"', page) == ["subject"]
    async with desk.api.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Campaign.__table__))).scalar_one() == 0


async def test_launch_pause_resume_and_cancel_change_the_state(desk: Desk) -> None:
    smtp = desk.api.smtp  # type: ignore[attr-defined]
    smtp.tempfail = ["@example.com"]  # every Acme address: left pending after the quick retries
    marketer = await desk.signed_in("acme-motors", "marketer")
    await _post(marketer, desk, "/desk/campaigns/new", FORM, "/desk/campaigns/new")
    page_path = "/desk/campaigns/spring-offer"
    status, location, _page = await _post(marketer, desk, f"{page_path}/launch", {}, page_path)
    assert (status, location) == (303, f"{page_path}?done=launch")
    assert (await _status(desk))["status"] == "incomplete"
    page = (await _get(marketer, desk, page_path))[1]
    assert "<strong class=\"status status-incomplete\">incomplete</strong>" in page
    assert "0 of 4 done (0%)" in page and "4 pending" in page
    assert re.findall(r'action="/desk/campaigns/spring-offer/(\w+)"', page) == ["pause", "resume", "cancel"]

    status, location, _page = await _post(marketer, desk, f"{page_path}/pause", {}, page_path)
    assert (status, location) == (303, f"{page_path}?done=pause")
    assert (await _status(desk))["status"] == "paused"
    page = (await _get(marketer, desk, location))[1]
    assert '<p class="notice" role="status">Paused' in page
    assert re.findall(r'action="/desk/campaigns/spring-offer/(\w+)"', page) == ["resume", "cancel"]
    # A launch of a paused campaign is refused, with the API's reason.
    status, _location, page = await _post(marketer, desk, f"{page_path}/launch", {}, page_path)
    assert status == 409 and "it is paused (resume it)" in page

    smtp.tempfail = ["liam@example.com", "emma@example.com"]
    status, location, _page = await _post(marketer, desk, f"{page_path}/resume", {}, page_path)
    assert (status, location) == (303, f"{page_path}?done=resume")
    assert (await _status(desk))["outcomes"] == {"sent": 2, "pending": 2}
    status, location, _page = await _post(marketer, desk, f"{page_path}/cancel", {}, page_path)
    assert (status, location) == (303, f"{page_path}?done=cancel")
    body = await _status(desk)
    assert (body["status"], body["outcomes"]) == ("cancelled", {"sent": 2, "suppressed": 2})
    page = (await _get(marketer, desk, page_path))[1]
    assert re.findall(r'action="/desk/campaigns/spring-offer/(\w+)"', page) == []
    assert _counts(page) == {("send", ""): 2, ("suppress", "campaign_cancelled"): 2}
    assert "4 of 4 done (100%): 2 sent, 2 suppressed, 0 failed, 0 pending" in " ".join(page.split())
    assert smtp.accepted == 2


async def test_the_filter_by_reason_lists_exactly_those_recipients_and_each_explains_itself(desk: Desk) -> None:
    await _suppress_two(desk)
    marketer = await desk.signed_in("acme-motors", "marketer")
    await _post(marketer, desk, "/desk/campaigns/new", FORM, "/desk/campaigns/new")
    await _post(marketer, desk, "/desk/campaigns/spring-offer/launch", {}, "/desk/campaigns/spring-offer")
    assert (await _status(desk))["status"] == "finished"
    viewer = await desk.signed_in("acme-motors", "viewer")
    page = (await _get(viewer, desk, "/desk/campaigns/spring-offer"))[1]
    assert sorted(_recipients(page)) == ["C1", "C2", "C3", "C4"]
    assert _counts(page) == {("send", ""): 2, ("suppress", "opted_out"): 1, ("suppress", "do_not_contact"): 1}
    assert re.findall(r'<option value="(\w+)"', page) == ["do_not_contact", "opted_out"]
    for reason, expected in (("opted_out", ["C2"]), ("do_not_contact", ["C3"]), ("quiet_hours", [])):
        status, page = await _get(viewer, desk, f"/desk/campaigns/spring-offer?reason={reason}")
        assert status == 200 and _recipients(page) == expected, reason
    # Each suppressed recipient links to its explanation, which links to the contact.
    page = (await _get(viewer, desk, "/desk/campaigns/spring-offer?reason=opted_out"))[1]
    assert 'href="/desk/campaigns/spring-offer/recipients/C2"' in page
    status, page = await _get(viewer, desk, "/desk/campaigns/spring-offer/recipients/C2")
    assert status == 200 and 'href="/desk/contacts/C2"' in page
    verdicts = dict(re.findall(r'<th scope="row">(\w+)</th>\s*<td class="verdict-(\w+)">', page))
    assert verdicts["opted_out"] == "fail" and verdicts["do_not_contact"] == "pass"
    # The API's explain of the same message says the same, rule by rule.
    _status_code, explained = await _api(desk, "GET", "/api/v1/contacts/C2/explain?channel=email&class=marketing",
                                         "viewer")
    assert {rule["code"]: rule["verdict"] for rule in explained["rules"]} == verdicts
    verdicts = dict(re.findall(r'<th scope="row">(\w+)</th>\s*<td class="verdict-(\w+)">',
                               (await _get(viewer, desk, "/desk/campaigns/spring-offer/recipients/C3"))[1]))
    assert verdicts["do_not_contact"] == "fail"
    assert (await _get(viewer, desk, "/desk/campaigns/spring-offer/recipients/C9"))[0] == 404


async def test_the_csv_download_is_the_apis_export(desk: Desk) -> None:
    await _suppress_two(desk)
    assert (await _api(desk, "POST", "/api/v1/campaigns", body=API_CAMPAIGN))[0] == 201
    assert (await _api(desk, "POST", "/api/v1/campaigns/spring-offer/launch"))[0] == 202
    await _status(desk)
    viewer = await desk.signed_in("acme-motors", "viewer")
    for query in ("", "?reason=opted_out"):
        async with viewer.get(desk.url(f"/desk/campaigns/spring-offer/deliveries.csv{query}")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/csv")
            assert response.headers["Content-Disposition"] == 'attachment; filename="spring-offer-deliveries.csv"'
            desk_csv = await response.text()
        async with desk.api.session.get(desk.api.url(f"/api/v1/campaigns/spring-offer/deliveries{query}"),
                                        headers=desk.api.auth("acme-motors", "viewer")) as response:
            api_csv = await response.text()
        assert desk_csv == api_csv
    rows = list(csv.DictReader(io.StringIO(desk_csv)))
    assert [(row["external_id"], row["reason"]) for row in rows] == [("C2", "opted_out")]


async def test_a_finished_campaigns_page_follows_mail_that_comes_back_later(desk: Desk) -> None:
    """The page remembers a finished campaign's counts (engine/desk/campaign_counts.py); a
    bounce recorded afterwards, by the inbound mail code, shows at once on the page and in
    the list, as the API's status says."""
    assert (await _api(desk, "POST", "/api/v1/campaigns", body=API_CAMPAIGN))[0] == 201
    assert (await _api(desk, "POST", "/api/v1/campaigns/spring-offer/launch"))[0] == 202
    assert (await _status(desk))["outcomes"] == {"sent": 4}
    viewer = await desk.signed_in("acme-motors", "viewer")
    for _ in range(2):  # counted, then remembered
        assert "4 of 4 done (100%): 4 sent, 0 suppressed, 0 failed" in " ".join(
            (await _get(viewer, desk, "/desk/campaigns/spring-offer"))[1].split())
        assert "4 sent, 0 suppressed, 0 failed" in " ".join((await _get(viewer, desk, "/desk/campaigns"))[1].split())
    deliveries, contacts = Delivery.__table__, Contact.__table__
    async with desk.api.engine.connect() as conn:
        row = (await conn.execute(
            select(deliveries.c.id, deliveries.c.tenant_id, deliveries.c.contact_id, deliveries.c.address)
            .join(contacts, contacts.c.id == deliveries.c.contact_id).where(contacts.c.external_id == "C4",
                                                                            contacts.c.tenant_id == deliveries.c.tenant_id,
                                                                            deliveries.c.tenant_id == desk.api.tenants["acme-motors"].id)
        )).one()
    bounce = DsnRecipient(address=row.address, permanent=True, action="failed", status="5.1.1",
                          diagnostic="550 5.1.1 user unknown")
    assert await record_bounce(desk.api.engine, DeliveryRef(row.id, row.tenant_id, row.contact_id, row.address,
                                                            "marketing", "first"), bounce, CLOCK()) is not None
    assert (await _status(desk))["outcomes"] == {"sent": 3, "failed": 1}
    page = " ".join((await _get(viewer, desk, "/desk/campaigns/spring-offer"))[1].split())
    assert "4 of 4 done (100%): 3 sent, 0 suppressed, 1 failed" in page
    assert "hard_bounce 1" in page and "bounced 5.1.1: 550 5.1.1 user unknown" in page
    assert "3 sent, 0 suppressed, 1 failed" in " ".join((await _get(viewer, desk, "/desk/campaigns"))[1].split())


async def test_a_running_campaigns_counts_are_kept_a_few_seconds_and_a_state_change_shows_at_once(desk: Desk) -> None:
    """A campaign that has not finished is counted at most every LIVE_FOR_US of the service's
    clock (instants offset from that clock, passed in), and any change of its status is never hidden."""
    from engine.desk.campaign_counts import LIVE_FOR_US, campaign_report
    from engine.send.launch import get_campaign

    desk.api.smtp.tempfail = ["@example.com"]  # type: ignore[attr-defined]
    marketer = await desk.signed_in("acme-motors", "marketer")
    await _post(marketer, desk, "/desk/campaigns/new", FORM, "/desk/campaigns/new")
    await _post(marketer, desk, "/desk/campaigns/spring-offer/launch", {}, "/desk/campaigns/spring-offer")
    assert (await _status(desk))["status"] == "incomplete"
    engine = desk.api.engine
    tenant_id = desk.api.tenants["acme-motors"].id
    async with engine.connect() as conn:
        record = await get_campaign(conn, tenant_id, "spring-offer")
    at = CLOCK()  # the service's own clock: the instants below are offsets from it
    first, counted = await campaign_report(engine, record, at)
    assert counted == at and first["outcomes"].get("pending") == 4
    deliveries = Delivery.__table__
    async with engine.begin() as conn:  # a runner records one more send, the status unchanged
        pending = (await conn.execute(select(deliveries.c.id).where(
            deliveries.c.campaign_id == record.id, deliveries.c.state == "pending").limit(1))).scalar_one()
        await conn.execute(deliveries.update().where(deliveries.c.id == pending).values(state="sent"))
    assert await campaign_report(engine, record, at + LIVE_FOR_US - 1) == (first, at)
    later, counted = await campaign_report(engine, record, at + LIVE_FOR_US)
    assert counted == at + LIVE_FOR_US and later["outcomes"].get("pending") == 3
    # A pause is shown at once, however recent the counts.
    await _post(marketer, desk, "/desk/campaigns/spring-offer/pause", {}, "/desk/campaigns/spring-offer")
    paused, counted = await campaign_report(engine, record, at + LIVE_FOR_US + 1)
    assert (paused["status"], counted) == ("paused", at + LIVE_FOR_US + 1)
    page = (await _get(marketer, desk, "/desk/campaigns/spring-offer"))[1]
    assert "Counted at " in page and "refreshed every few seconds" in page
