"""Sign-in and settings in headless Chromium (SQLite only: the pages' SQL is covered on both
databases by the HTTP-level tests; a browser per database would double the slowest tests).

Every page visited is checked by tests/desk/browsing.py: screenshots in artifacts/desk/,
usable at 390 px, no serious or critical axe-core violation.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from engine.render.context import recipient_context
from engine.render.sms import SmsRenderer
from tests.desk.browsing import (
    check_page,
    chromium,  # noqa: F401 - the fixture
    click_and_wait,
    find,
    go,
    sign_in,
    visit,
    wait,
)
from tests.desk.conftest import Desk

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

TENANT = "acme-motors"


async def test_each_role_signs_in_through_the_form_and_lands_on_its_page(desk: Desk, chromium: webdriver.Chrome) -> None:  # noqa: F811
    base = desk.url("")

    def sign_in_page() -> None:
        go(chromium, f"{base}/desk/sign-in")
        chromium.delete_all_cookies()
        visit(chromium, f"{base}/desk/sign-in", "sign-in")

    await asyncio.to_thread(sign_in_page)
    homes = {"admin": "/desk/campaigns", "manager": "/desk/campaigns", "marketer": "/desk/campaigns",
             "sales": "/desk/contacts", "viewer": "/desk/campaigns"}
    for role, home in homes.items():
        landed = await asyncio.to_thread(sign_in, chromium, base, TENANT, role)
        assert landed == home, role
        who = await asyncio.to_thread(lambda: find(chromium, ".who").text)
        assert who == f"user {role} ({role})"


def _set(driver: webdriver.Chrome, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = find(driver, f"#{name}")
        field.clear()
        field.send_keys(value)


def _save(driver: webdriver.Chrome) -> None:
    click_and_wait(driver, find(driver, "button[value=save]"))


async def test_a_manager_changes_quiet_hours_in_the_browser(desk: Desk, chromium: webdriver.Chrome) -> None:  # noqa: F811
    base = desk.url("")
    message = "Hi {{ first_name }}, it's {{ agent_name }} at {{ tenant_name }} 🚗 Reply YES for texts."
    expected = SmsRenderer(None, opt_out_footer="Reply STOP to opt out of texts from this number.",
                           opt_in_message=message).render_opt_in_request(recipient_context(
                               first_name="Ava", agent_name="Jordan", sender_name="Jordan", tenant_name="Acme Motors"))

    def open_and_preview() -> tuple[str, str]:
        assert sign_in(chromium, base, TENANT, "manager") == "/desk/campaigns"
        visit(chromium, f"{base}/desk/settings", "settings")
        # The live preview: typing asks the server, which counts as the sender does. Each
        # pause in the typing asks again, so wait for the answer about the whole message
        # (an earlier one, about part of it, may show first on a slow machine).
        _set(chromium, {"sms_opt_in_message": message})
        summary = f"UCS-2, {expected.units} characters, {expected.segments} segments"
        with contextlib.suppress(TimeoutException):  # the asserts below say what showed instead
            wait(chromium).until(expected_conditions.text_to_be_present_in_element(
                (By.ID, "preview-opt-in-count"), summary))
        return find(chromium, "#preview-opt-in-text").text, find(chromium, "#preview-opt-in-count").text

    text, count = await asyncio.to_thread(open_and_preview)
    assert text == expected.text
    assert count == f"UCS-2, {expected.units} characters, {expected.segments} segments"

    def mistype_then_fix() -> tuple[str, str]:
        _set(chromium, {"quiet_start": "9pm", "quiet_end": "08:00"})
        _save(chromium)
        error = find(chromium, "#quiet_start-error").text
        check_page(chromium, "settings-invalid")
        # What was typed is still there, the message too; fix the one field and save.
        assert find(chromium, "#sms_opt_in_message").get_attribute("value") == message
        _set(chromium, {"quiet_start": "21:00"})
        _save(chromium)
        return error, find(chromium, "p.notice").text

    error, notice = await asyncio.to_thread(mistype_then_fix)
    assert error == "'9pm' is not a time of day HH:MM (00:00-23:59)"
    assert notice == "Saved as a new policy version."
    async with desk.api.session.get(desk.url("/api/v1/tenant/policy"), headers=desk.api.auth(TENANT, "viewer")) as response:
        policy = await response.json()
    assert policy["policy"]["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert policy["policy"]["sms"]["opt_in_message"] == message
    assert policy["applied_by"] == "manager"


async def test_a_marketer_gets_the_403_page_and_a_missing_page_is_a_404(desk: Desk, chromium: webdriver.Chrome) -> None:  # noqa: F811
    base = desk.url("")

    def as_marketer() -> tuple[str, str, str]:
        assert sign_in(chromium, base, TENANT, "marketer") == "/desk/campaigns"
        nav = find(chromium, "nav").text
        visit(chromium, f"{base}/desk/settings", "forbidden")
        forbidden = find(chromium, "main").text
        visit(chromium, f"{base}/desk/no-such-page", "not-found")
        return nav, forbidden, find(chromium, "h1").text

    nav, forbidden, missing = await asyncio.to_thread(as_marketer)
    assert "Settings" not in nav
    assert "Your role (marketer) may not write policy." in forbidden
    assert "Save settings" not in forbidden
    assert missing
