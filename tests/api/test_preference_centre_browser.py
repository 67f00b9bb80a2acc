"""The preference centre in a real browser: Debian's headless Chromium, driven by Selenium.

A person opens their link, unticks one box (marketing from partners by text message),
saves, and the next decision suppresses exactly that and nothing else. The browser runs
in a thread: the service under test shares this test's event loop. The page, before and
after saving, gets the desk's checks (tests/desk/browsing.py): screenshots in
artifacts/desk/, usable at 390 px, no serious or critical axe-core violation.
"""

from __future__ import annotations

import asyncio
import itertools

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.api.conftest import Api
from tests.desk.browsing import check_page, click_and_wait, find, go
from tests.desk.browsing import chromium as browser  # noqa: F401 - the fixture

# The channels explain answers for (letters and social posts are not sent by Consentry).
CHANNELS = ("email", "sms", "voice")


async def _decisions(api: Api) -> dict[str, str]:
    """party:channel:class -> the failing consent rule for C1, or "send", as explain says."""
    decisions = {}
    headers = api.auth("acme-motors", "sales")
    for party, channel, class_code in itertools.product(("first", "third"), CHANNELS, ("marketing", "service", "survey")):
        query = f"channel={channel}&class={class_code}&party={party}"
        async with api.session.get(api.url(f"/api/v1/contacts/C1/explain?{query}"), headers=headers) as response:
            assert response.status == 200, await response.text()
            rules = (await response.json())["rules"]
        failing = [r["code"] for r in rules if r["verdict"] == "fail" and r["code"].startswith("consent_")]
        decisions[f"{party}:{channel}:{class_code}"] = failing[0] if failing else "send"
    return decisions


async def test_unticking_one_box_in_chromium_suppresses_exactly_that(api: Api, browser: webdriver.Chrome) -> None:  # noqa: F811
    url = api.url(f"/p/{await api.token('acme-motors', 'C1')}")
    before = await _decisions(api)

    def untick_and_save() -> str:
        go(browser, url)
        check_page(browser, "preference-centre")
        box = find(browser, "third:sms:marketing", By.ID)
        assert box.is_selected()
        box.click()
        click_and_wait(browser, find(browser, "button[type=submit]"))
        check_page(browser, "preference-centre-saved")
        return find(browser, ".saved").text

    assert await asyncio.to_thread(untick_and_save) == "Your preferences have been saved."

    def ticked_after_reload() -> dict[str, bool]:
        go(browser, url)
        find(browser, "input[type=checkbox]")
        return {box.get_attribute("id"): box.is_selected()
                for box in browser.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")}

    ticked = await asyncio.to_thread(ticked_after_reload)
    assert [key for key, on in ticked.items() if not on] == [
        key for key in ticked if key == "third:sms:marketing" or key.endswith(":survey")
    ]
    after = await _decisions(api)
    assert {key for key in before if before[key] != after[key]} == {"third:sms:marketing"}
    assert (before["third:sms:marketing"], after["third:sms:marketing"]) == ("send", "consent_revoked")
    assert [(e["action"], e["channel"], e["class_code"], e["party"]) for e in await api.events()] == [
        ("revoke", "sms", "marketing", "third"),
        ("review", None, None, None),
    ]
