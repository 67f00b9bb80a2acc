"""A marketer prepares, checks, launches and reads a campaign in headless Chromium.

Signs in with the form, fills the new-campaign form, reads the dry-run counts, launches
from the check page, waits on the campaign page until it has finished, and opens a
suppressed recipient's explanation, then the campaign page at 390 px wide. A screenshot of
each page goes to artifacts/desk/.
SQLite only: the pages and queries are the same on PostgreSQL, where tests/desk/
test_campaigns.py drives them over HTTP; a browser adds nothing there but minutes.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from engine.timeutil import iso_z
from tests.api.conftest import CLOCK
from tests.desk.browsing import check_page, chromium, click_and_wait, find, go
from tests.desk.conftest import PASSWORD, Desk

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "desk"


browser = chromium  # the shared harness (tests/desk/browsing.py): one Chromium for the module


def _shot(driver: webdriver.Chrome, name: str) -> None:
    """Screenshots at 1280 and 390 px, no sideways scrolling, no serious axe-core violation."""
    check_page(driver, name)


def _counts(driver: webdriver.Chrome) -> dict[tuple[str, str], int]:
    table = find(driver, "table.counts")
    counts = {}
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        decision, reason, count, _share = (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))
        counts[(decision, "" if reason == "—" else reason)] = int(count.replace(",", ""))
    return counts


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_marketer_prepares_checks_launches_and_reads_a_campaign(desk: Desk, browser: webdriver.Chrome) -> None:
    occurred = iso_z(CLOCK() - 60_000_000)
    async with desk.api.session.post(desk.api.url("/api/v1/contacts/C2/consent-events"), headers=desk.api.auth(
            "acme-motors", "sales"), json={"action": "opt_out", "method": "verbal", "occurred_at": occurred}) as r:
        assert r.status == 201

    def sign_in_and_fill_the_form() -> dict[tuple[str, str], int]:
        go(browser, desk.url("/desk/campaigns/new"))
        find(browser, "#tenant").send_keys("acme-motors")
        find(browser, "#username").send_keys("marketer")
        find(browser, "#password").send_keys(PASSWORD)
        click_and_wait(browser, find(browser, "form button[type=submit]"))
        find(browser, "#campaign").send_keys("spring-offer")
        Select(find(browser, "#template")).select_by_value("spring_offer")
        find(browser, "#subject").send_keys("Your spring service offer")
        find(browser, "#sender_email").send_keys("service@acme.example")
        find(browser, "#sender_name").send_keys("Acme Service")
        _shot(browser, "campaign-new")
        click_and_wait(browser, find(browser, "form.campaign-form button[type=submit]"))
        assert find(browser, "p.notice").text.startswith("Saved as a draft")
        _shot(browser, "campaign-check")
        return _counts(browser)

    counts = await asyncio.to_thread(sign_in_and_fill_the_form)
    assert counts == {("send", ""): 3, ("suppress", "opted_out"): 1}

    def launch() -> str:
        click_and_wait(browser, find(browser, "//button[starts-with(normalize-space(), 'Launch')]", By.XPATH))
        return find(browser, "p.notice").text

    assert "Launched" in await asyncio.to_thread(launch)
    # The run is a task of the service, on this test's loop: wait for it here, not in the browser.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with desk.api.session.get(desk.api.url("/api/v1/campaigns/spring-offer/status"),
                                        headers=desk.api.auth("acme-motors", "viewer")) as r:
            if (await r.json())["status"] == "finished":
                break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)

    def read_the_campaign_and_an_explanation() -> tuple[dict[tuple[str, str], int], str, str, str]:
        go(browser, desk.url("/desk/campaigns/spring-offer"))
        progress = " ".join(find(browser, ".progress-line").text.split())
        counts = _counts(browser)
        _shot(browser, "campaign")
        go(browser, desk.url("/desk/campaigns"))
        _shot(browser, "campaigns")
        go(browser, desk.url("/desk/campaigns/spring-offer"))
        Select(find(browser, "#reason")).select_by_value("opted_out")
        click_and_wait(browser, find(browser, "form.filter button"))
        assert "reason=opted_out" in browser.current_url
        click_and_wait(browser, find(browser, "table.recipients a[href$='/recipients/C2']"))
        failing = [row.find_element(By.TAG_NAME, "th").text
                   for row in find(browser, "table.rules").find_elements(By.CSS_SELECTOR, "tbody tr")
                   if row.find_elements(By.CSS_SELECTOR, "td.verdict-fail")]
        _shot(browser, "campaign-recipient")
        heading = find(browser, "h1").text
        return counts, progress, ",".join(failing), heading

    counts, progress, failing, heading = await asyncio.to_thread(read_the_campaign_and_an_explanation)
    assert counts == {("send", ""): 3, ("suppress", "opted_out"): 1}
    assert re.search(r"4 of 4 done \(100%\): 3 sent, 1 suppressed, 0 failed, 0 pending", progress), progress
    assert (failing, heading) == ("opted_out", "Why C2 got this decision")
    # Every page at 1280 and 390 px (check_page also ran axe-core and the 390 px check on each).
    names = ("campaign-new", "campaign-check", "campaign", "campaigns", "campaign-recipient")
    assert {f"{n}{s}.png" for n in names for s in ("", "-390")} <= {p.name for p in ARTIFACTS.glob("campaign*.png")}
