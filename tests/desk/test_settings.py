"""/desk/settings over HTTP (SQLite and PostgreSQL): the form posts what the page shows,
with one field changed, as a browser would; the API's GET /api/v1/tenant/policy is how
every other client sees the result."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from engine.render.context import recipient_context
from engine.render.segments import measure_sms
from engine.render.sms import SmsRenderer
from tests.desk.conftest import Desk
from tests.desk.form_fields import form_fields

TENANT = "acme-motors"


async def _policy(desk: Desk) -> dict[str, Any]:
    async with desk.api.session.get(desk.url("/api/v1/tenant/policy"), headers=desk.api.auth(TENANT, "viewer")) as response:
        assert response.status == 200
        return await response.json()


async def _open(browser: aiohttp.ClientSession, desk: Desk) -> tuple[int, str]:
    async with browser.get(desk.url("/desk/settings")) as response:
        return response.status, await response.text()


async def _post(browser: aiohttp.ClientSession, desk: Desk, fields: dict[str, str], path: str = "/desk/settings") -> tuple[int, str, str]:
    async with browser.post(desk.url(path), data=fields, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


def _shown_value(html: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}"[^>]*value="([^"]*)"', html)
    assert found, f"no input {name}"
    return found.group(1)


async def test_a_manager_saves_quiet_hours_and_excluded_sources_as_a_new_version_in_their_name(desk: Desk) -> None:
    before = await _policy(desk)
    browser = await desk.signed_in(TENANT, "manager")
    status, html = await _open(browser, desk)
    assert status == 200
    fields = form_fields(html, "settings")
    assert fields["version"] == str(before["policy_version"])
    assert fields["sms_opt_in_required"] == "on"  # acme requires SMS opt-in
    fields.update(quiet_start="21:00", quiet_end="08:00", sms_excluded="Fullpath\n  \nDealer Website\n",
                  cap_max_sms="3", cap_hours_sms="24", class_mode_2="opt_out", action="save")
    status, location, _ = await _post(browser, desk, fields)
    assert (status, location) == (303, "/desk/settings?done=saved")

    after = await _policy(desk)
    assert after["policy_version"] == before["policy_version"] + 1
    assert after["applied_by"] == "manager"
    policy = after["policy"]
    assert policy["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert policy["sms"]["opt_in_excluded_sources"] == ["Fullpath", "Dealer Website"]
    assert policy["frequency_caps"] == [{"channel": "sms", "max": 3, "per_hours": 24}]
    assert policy["classes"]["survey"] == {"mode": "opt_out"}
    # Everything the form did not touch is as it was.
    untouched = {key: value for key, value in before["policy"].items()
                 if key not in {"quiet_hours", "sms", "frequency_caps", "classes"}}
    assert untouched == {key: after["policy"][key] for key in untouched}
    assert {**before["policy"]["sms"], "opt_in_excluded_sources": ["Fullpath", "Dealer Website"]} == policy["sms"]

    page = await (await browser.get(desk.url("/desk/settings?done=saved"))).text()
    assert 'role="status">Saved as a new policy version.' in page
    history = re.findall(r'<td class="number">(\d+)( \(current\))?</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>', page)
    assert [(int(v), current != "", by) for v, current, _, by in history][:2] == [
        (after["policy_version"], True, "manager"), (before["policy_version"], False, before["applied_by"] or "not recorded"),
    ]
    assert history[0][2] == after["applied_at"]

    # Saving the same form again records nothing new.
    fields = {**form_fields(page, "settings"), "action": "save"}
    status, location, _ = await _post(browser, desk, fields)
    assert (status, location) == (303, "/desk/settings?done=unchanged")
    assert (await _policy(desk))["policy_version"] == after["policy_version"]


async def test_a_marketer_gets_the_403_page_and_cannot_save(desk: Desk) -> None:
    before = await _policy(desk)
    manager = await desk.signed_in(TENANT, "manager")
    fields = form_fields((await _open(manager, desk))[1], "settings")

    marketer = await desk.signed_in(TENANT, "marketer")
    status, html = await _open(marketer, desk)
    assert status == 403
    assert "Your role (marketer) may not write policy." in html
    assert "<form id=\"settings\"" not in html and ">Settings</a>" not in html
    token = await desk.csrf(marketer, "/desk/no-such-page")
    for path in ("/desk/settings", "/desk/settings/preview"):
        status, _, html = await _post(marketer, desk, {**fields, "csrf_token": token, "quiet_start": "20:00",
                                                       "quiet_end": "09:00", "action": "save"}, path)
        assert status == 403, path
        assert "may not write policy" in html
    assert await _policy(desk) == before


async def test_a_form_opened_before_someone_else_saved_is_refused_and_keeps_what_was_typed(desk: Desk) -> None:
    manager = await desk.signed_in(TENANT, "manager")
    admin = await desk.signed_in(TENANT, "admin")
    mine = form_fields((await _open(manager, desk))[1], "settings")
    theirs = form_fields((await _open(admin, desk))[1], "settings")
    status, location, _ = await _post(admin, desk, {**theirs, "review_period_days": "90", "action": "save"})
    assert status == 303
    saved = await _policy(desk)
    assert saved["applied_by"] == "admin"

    status, _, html = await _post(manager, desk, {**mine, "quiet_start": "22:30", "quiet_end": "07:15", "action": "save"})
    assert status == 409
    assert "changed by someone else since you opened them, so nothing was saved" in html
    assert _shown_value(html, "quiet_start") == "22:30" and _shown_value(html, "quiet_end") == "07:15"
    assert f"Open the current settings (version {saved['policy_version']})" in html
    assert await _policy(desk) == saved
    # The refused form still carries the version it was opened on: sending it again is refused again.
    assert form_fields(html, "settings")["version"] == mine["version"]


async def test_bad_input_is_shown_at_each_field_with_what_was_typed_and_nothing_is_saved(desk: Desk) -> None:
    before = await _policy(desk)
    browser = await desk.signed_in(TENANT, "admin")
    fields = form_fields((await _open(browser, desk))[1], "settings")
    fields.update(quiet_start="25:00", quiet_end="", review_period_days="half a year", cap_hours_email="24",
                  timezone="Mars/Olympus", class_code_new="VIP!", senders_domains="acme-motors.example",
                  senders_bulk_email="offers@elsewhere.example", action="save")
    status, _, html = await _post(browser, desk, fields)
    assert status == 422
    expected = {
        "quiet_start": "'25:00' is not a time of day HH:MM (00:00-23:59)",
        "quiet_end": "Field required",
        "review_period_days": "Input should be a valid integer",
        "cap_max_email": "Field required",
        "timezone": "'Mars/Olympus' is not an IANA time zone",
        "class_code_new": "class code 'VIP!' must be lower-case letters, digits, _ or -",
        "senders_bulk_email": "'offers@elsewhere.example' is not in the tenant's domains (acme-motors.example)",
    }
    for name, message in expected.items():
        found = re.search(rf'<p class="error" id="{name}-error">([^<]*)</p>\s*<input id="{name}" name="{name}"[^>]*>', html)
        assert found, name
        assert found.group(1).startswith(message.replace("'", "&#39;")), (name, found.group(1))
        assert f'{name}-error"' in found.group(0).split("<input", 1)[1] and 'aria-invalid="true"' in found.group(0)
    assert "Nothing was saved: 7 problems" in html
    for name, typed in (("quiet_start", "25:00"), ("review_period_days", "half a year"), ("timezone", "Mars/Olympus"),
                        ("class_code_new", "VIP!"), ("senders_bulk_email", "offers@elsewhere.example")):
        assert _shown_value(html, name) == typed
    assert await _policy(desk) == before


async def test_the_preview_counts_segments_as_the_sender_does_with_and_without_the_script(desk: Desk) -> None:
    browser = await desk.signed_in(TENANT, "manager")
    fields = form_fields((await _open(browser, desk))[1], "settings")
    footer = "Reply STOP to opt out of texts from this number."
    cases = {
        # Extension characters (€) count two septets each; an emoji turns the whole text to UCS-2.
        "gsm": "Hi {{ first_name }}, {{ agent_name }} from {{ tenant_name }} here: reply YES for offers from €10. " * 2,
        "ucs2": "Hi {{ first_name }} 👋 reply YES to get texts from {{ tenant_name }}",
    }
    for label, message in cases.items():
        async with browser.post(desk.url("/desk/settings/preview"), data={**fields, "sms_opt_in_message": message}) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        renderer = SmsRenderer(None, opt_out_footer=footer, opt_in_message=message)
        sent = renderer.render_opt_in_request(recipient_context(first_name="Ava", agent_name="Jordan",
                                                                sender_name="Jordan", tenant_name="Acme Motors"))
        assert answer["opt_in"] == {"text": sent.text, "encoding": sent.encoding, "units": sent.units,
                                    "segments": sent.segments, "summary": answer["opt_in"]["summary"], "error": None}, label
        assert answer["footer"]["segments"] == measure_sms(footer).segments == 1
    assert (answer["opt_in"]["encoding"], answer["opt_in"]["segments"]) == ("UCS-2", 2)  # the footer is appended
    without_token = {name: value for name, value in fields.items() if name != "csrf_token"}
    async with browser.post(desk.url("/desk/settings/preview"), data=without_token) as response:
        assert response.status == 403
    bad = await (await browser.post(desk.url("/desk/settings/preview"),
                                    data={**fields, "sms_opt_in_message": "Hi {{ frist_name }}"})).json()
    assert "unknown variable 'frist_name'" in bad["opt_in"]["error"]

    # Without the script: the Preview button posts the form, the page shows the count, nothing is saved.
    before = await _policy(desk)
    message = cases["ucs2"]
    status, _, html = await _post(browser, desk, {**fields, "sms_opt_in_message": message, "action": "preview"})
    assert status == 200
    assert '<span id="preview-opt-in-count">UCS-2, ' in html and "2 segments</span>" in html
    assert form_fields(html, "settings")["sms_opt_in_message"] == message
    assert await _policy(desk) == before
