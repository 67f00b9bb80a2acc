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
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.desk.browsing import check_page, chromium, sign_in
from tests.desk.conftest import PASSWORD, Desk

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

    def wait_for(selector: str) -> str:
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))
        return browser.find_element(By.CSS_SELECTOR, selector).text

    def sign_in_and_search() -> str:
        browser.get(desk.url("/desk/sign-in"))
        browser.find_element(By.ID, "tenant").send_keys("acme-motors")
        browser.find_element(By.ID, "username").send_keys("sales")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "#password ~ button[type=submit]").click()
        wait_for("#q")
        browser.find_element(By.ID, "q").send_keys("ava smi")
        browser.find_element(By.CSS_SELECTOR, "form[role=search] button").click()
        found = wait_for("table tbody")
        check_page(browser, "contacts-search")
        return found

    assert "ava@example.com" in await asyncio.to_thread(sign_in_and_search)

    def open_and_confirm_review() -> tuple[str, str]:
        browser.find_element(By.LINK_TEXT, "Ava Smith").click()
        heading = wait_for("h1")
        check_page(browser, "contact-review")
        Select(browser.find_element(By.ID, "review-method")).select_by_value("verbal")
        browser.find_element(By.XPATH, "//button[text()='Yes, these are still right']").click()
        return heading, wait_for("p.notice")

    heading, notice = await asyncio.to_thread(open_and_confirm_review)
    assert heading == "Review Ava Smith's preferences first" and notice == "Recorded: review."

    def opt_out() -> tuple[str, str]:
        Select(browser.find_element(By.ID, "marketing-method")).select_by_value("phone_call")
        browser.find_element(By.ID, "marketing-note").send_keys("no more offers, please")
        browser.find_element(By.XPATH, "//button[text()='Opt out of marketing']").click()
        notice = wait_for("p.notice")
        check_page(browser, "contact")
        return notice, browser.find_element(By.CSS_SELECTOR, "ol.timeline li").text

    notice, newest = await asyncio.to_thread(opt_out)
    assert notice == "Recorded: opt out."
    assert "opt out" in newest and "phone_call" in newest and "no more offers, please" in newest and "sales" in newest

    # The next check suppresses her: a marketer opens the dry run of a marketing email.
    async with desk.api.session.post(desk.api.url("/api/v1/campaigns"), headers=desk.api.auth("acme-motors", "marketer"),
                                     json=SPRING_OFFER) as response:
        assert response.status == 201, await response.text()

    def check_as_a_marketer() -> dict[tuple[str, str], int]:
        sign_in(browser, desk.url(""), "acme-motors", "marketer")
        browser.get(desk.url("/desk/campaigns/spring-offer/check"))
        wait_for("table.counts")
        check_page(browser, "contact-opted-out-check")
        counts = {}
        for row in browser.find_elements(By.CSS_SELECTOR, "table.counts tbody tr"):
            decision, reason, count, _share = (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))
            counts[(decision, "" if reason == "—" else reason)] = int(count.replace(",", ""))
        sign_in(browser, desk.url(""), "acme-motors", "sales")
        browser.get(desk.url("/desk/contacts/C1"))
        wait_for("h1")
        return counts

    assert await asyncio.to_thread(check_as_a_marketer) == {("send", ""): 3, ("suppress", "opted_out"): 1}

    def reply() -> tuple[str, str]:
        browser.find_element(By.LINK_TEXT, "Reply to Ava Smith").click()
        wait_for("#reply-body")
        browser.find_element(By.ID, "reply-subject").send_keys("Your car is ready")
        browser.find_element(By.ID, "reply-body").send_keys("Hi Ava, your car is ready for pick-up.")
        browser.find_element(By.XPATH, "//button[text()='Check before sending']").click()
        decision = wait_for("#decision ~ p strong")
        check_page(browser, "contact-reply-check")
        browser.find_element(By.XPATH, "//button[text()='Send now']").click()
        sent = wait_for("#sent")
        check_page(browser, "contact-reply-sent")
        return decision, sent

    decision, sent = await asyncio.to_thread(reply)
    assert decision == "will be sent" and sent == "Sent"
    sink.call(sink.smtp.wait_for(before + 1, timeout=10))
    to_ava = [m for m in sink.smtp.messages if "ava@example.com" in str(m["to"])]
    assert len(to_ava) == before + 1 and "Your car is ready" in str(to_ava[-1])
    for name in ("contacts-search", "contact-review", "contact", "contact-reply-check", "contact-reply-sent"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
