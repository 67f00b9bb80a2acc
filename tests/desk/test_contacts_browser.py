"""A salesperson's round in a real browser (Debian's headless Chromium, Selenium): sign in,
find a customer, confirm the overdue review, record an opt-out, see it in the log, reply by
email and find the email at the capture server. A screenshot of each page goes to
artifacts/desk/ (git-ignored).

SQLite only: the pages' SQL is the same on both databases and the HTTP tests
(test_contacts.py) run on both; a browser run is slow, so it runs once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.desk.browsing import check_page, chromium, click_and_wait, find, go, sign_in
from tests.desk.conftest import Desk

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "desk"


SPRING_OFFER = {
    "campaign": "spring-offer", "kind": "bulk", "channel": "email", "class": "marketing", "template": "spring_offer",
    "subject": "Your spring service offer", "sender": {"email": "service@acme.example", "name": "Acme Service"},
}
browser = chromium  # the shared harness (tests/desk/browsing.py): one Chromium for the module


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sales_finds_a_customer_records_an_opt_out_and_replies(desk: Desk, browser: webdriver.Chrome) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sink = desk.api.sink
    assert sink is not None
    before = len([m for m in sink.smtp.messages if "ava@example.com" in str(m["to"])])

    def sign_in_and_search() -> str:
        assert sign_in(browser, desk.url(""), "acme-motors", "sales") == "/desk/contacts"
        find(browser, "#q").send_keys("ava smi")
        click_and_wait(browser, find(browser, "form[role=search] button"))
        found = find(browser, "table tbody").text
        check_page(browser, "contacts-search")
        return found

    assert "ava@example.com" in await asyncio.to_thread(sign_in_and_search)

    def open_and_confirm_review() -> tuple[str, str]:
        click_and_wait(browser, find(browser, "Ava Smith", By.LINK_TEXT))
        heading = find(browser, "h1").text
        check_page(browser, "contact-review")
        Select(find(browser, "#review-method")).select_by_value("verbal")
        click_and_wait(browser, find(browser, "//button[text()='Yes, these are still right']", By.XPATH))
        return heading, find(browser, "p.notice").text

    heading, notice = await asyncio.to_thread(open_and_confirm_review)
    assert heading == "Review Ava Smith's preferences first" and notice == "Recorded: review."

    def opt_out() -> tuple[str, str]:
        Select(find(browser, "#marketing-method")).select_by_value("phone_call")
        find(browser, "#marketing-note").send_keys("no more offers, please")
        click_and_wait(browser, find(browser, "//button[text()='Opt out of marketing']", By.XPATH))
        notice = find(browser, "p.notice").text
        check_page(browser, "contact")
        return notice, find(browser, "ol.timeline li").text

    notice, newest = await asyncio.to_thread(opt_out)
    assert notice == "Recorded: opt out."
    assert "opt out" in newest and "phone_call" in newest and "no more offers, please" in newest and "sales" in newest

    # The next check suppresses her: a marketer opens the dry run of a marketing email.
    async with desk.api.session.post(desk.api.url("/api/v1/campaigns"), headers=desk.api.auth("acme-motors", "marketer"),
                                     json=SPRING_OFFER) as response:
        assert response.status == 201, await response.text()

    def check_as_a_marketer() -> dict[tuple[str, str], int]:
        assert sign_in(browser, desk.url(""), "acme-motors", "marketer") == "/desk/campaigns"
        go(browser, desk.url("/desk/campaigns/spring-offer/check"))
        table = find(browser, "table.counts")
        check_page(browser, "contact-opted-out-check")
        counts = {}
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
            decision, reason, count, _share = (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))
            counts[(decision, "" if reason == "—" else reason)] = int(count.replace(",", ""))
        assert sign_in(browser, desk.url(""), "acme-motors", "sales") == "/desk/contacts"
        go(browser, desk.url("/desk/contacts/C1"))
        return counts

    assert await asyncio.to_thread(check_as_a_marketer) == {("send", ""): 3, ("suppress", "opted_out"): 1}

    def reply() -> tuple[str, str]:
        click_and_wait(browser, find(browser, "Reply to Ava Smith", By.LINK_TEXT))
        find(browser, "#reply-subject").send_keys("Your car is ready")
        find(browser, "#reply-body").send_keys("Hi Ava, your car is ready for pick-up.")
        click_and_wait(browser, find(browser, "//button[text()='Check before sending']", By.XPATH))
        decision = find(browser, "#decision ~ p strong").text
        check_page(browser, "contact-reply-check")
        click_and_wait(browser, find(browser, "//button[text()='Send now']", By.XPATH))
        sent = find(browser, "#sent").text
        check_page(browser, "contact-reply-sent")
        return decision, sent

    decision, sent = await asyncio.to_thread(reply)
    assert decision == "will be sent" and sent == "Sent"
    sink.call(sink.smtp.wait_for(before + 1, timeout=10))
    to_ava = [m for m in sink.smtp.messages if "ava@example.com" in str(m["to"])]
    assert len(to_ava) == before + 1 and "Your car is ready" in str(to_ava[-1])
    for name in ("contacts-search", "contact-review", "contact", "contact-reply-check", "contact-reply-sent"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
