"""The address book, the contact page, its buttons and the reply form, over HTTP as a
browser uses them (SQLite and PostgreSQL): what each role sees and may do, and that what
the page records is what the API and gating then read."""

from __future__ import annotations

import re
from html import unescape

import aiohttp

from tests.api.conftest import Api, inbound_sms
from tests.desk.conftest import Desk

ACME = "acme-motors"
ACME_NUMBER = "+12135550000"  # the number Acme texts from
_FORM_TOKEN = re.compile(r'name="token" value="([^"]+)"')
_EVENT_FORM = 'action="/desk/contacts/C1/events"'


async def _get(browser: aiohttp.ClientSession, desk: Desk, path: str) -> tuple[int, str]:
    async with browser.get(desk.url(path), allow_redirects=False) as response:
        return response.status, unescape(await response.text())


async def _post(browser: aiohttp.ClientSession, desk: Desk, path: str, data: dict[str, str],
                page: str | None = None) -> tuple[int, str, str]:
    token = await desk.csrf(browser, page or path)
    async with browser.post(desk.url(path), data={"csrf_token": token, **data}, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), unescape(await response.text())


def _result_ids(text: str) -> list[str]:
    """The customer ids in the search results, in order."""
    return re.findall(r'<a href="/desk/contacts/([^"?/]+)">', text)


async def _api_search(api: Api, q: str) -> list[str]:
    async with api.session.get(api.url("/api/v1/contacts"), params={"q": q},
                               headers=api.auth(ACME, "viewer")) as response:
        return [contact["external_id"] for contact in (await response.json())["contacts"]]


async def _explain(api: Api, external_id: str, **params: str) -> dict:
    query = {"channel": "email", "class": "marketing", "party": "first", "kind": "bulk", **params}
    async with api.session.get(api.url(f"/api/v1/contacts/{external_id}/explain"), params=query,
                               headers=api.auth(ACME, "viewer")) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def _sent_to(api: Api, address: str) -> list[dict]:
    assert api.sink is not None
    return [m for m in api.sink.smtp.messages + api.sink.sms.messages
            if address in (m["to"] if isinstance(m["to"], list) else [m["to"]])]


async def test_search_finds_by_name_email_phone_and_id_as_the_api_does(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "sales")
    for q, expected in (
        ("ava", ["C1"]), ("GARCIA", ["C2", "C3"]), ("emma gar", ["C3"]), ("noah@ex", ["C4"]),
        ("(213) 555-0102", ["C2", "C3"]), ("C4", ["C4"]), ("bob", []),
    ):
        status, text = await _get(browser, desk, f"/desk/contacts?q={q}")
        assert status == 200, q
        assert _result_ids(text) == expected == await _api_search(desk.api, q), q
        if not expected:
            assert f"No contact matches “{q}”" in text
    # Every contact, a page at a time would follow a keyset link; four fit on one page.
    status, text = await _get(browser, desk, "/desk/contacts")
    assert _result_ids(text) == ["C1", "C2", "C3", "C4"] and "Next contacts" not in text
    status, text = await _get(browser, desk, "/desk/contacts?q=" + "x" * 321)
    assert status == 422 and 'aria-describedby="q-error"' in text and "at most 320 characters" in text


async def test_another_tenants_contact_is_not_found(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "sales")
    assert (await _get(browser, desk, "/desk/contacts/B1"))[0] == 404
    assert (await _get(browser, desk, "/desk/contacts/B1/reply"))[0] == 404
    status, _location, _text = await _post(browser, desk, "/desk/contacts/B1/events", {
        "form": "marketing", "action": "opt_out", "method": "verbal",
    }, page="/desk/contacts/C1?review=later")
    assert status == 404
    # Bravo's own C1 is Carl; Acme's user sees Acme's C1, Ava.
    status, text = await _get(browser, desk, "/desk/contacts/C1?review=later")
    assert status == 200 and "<h1>Ava Smith</h1>" in text and "Carl" not in text
    assert all(event["action"] != "opt_out" for event in await desk.api.events("bravo-cars"))


async def test_the_timeline_shows_an_event_recorded_through_the_api(desk: Desk) -> None:
    api = desk.api
    async with api.session.post(api.url("/api/v1/contacts/C2/consent-events"), json={
        "action": "grant", "channel": "email", "class": "survey", "party": "first", "method": "written",
        "occurred_at": "2026-01-15T10:00:00-08:00", "basis": "consent", "note": "signed at the service counter",
    }, headers=api.auth(ACME, "sales")) as response:
        assert response.status == 201, await response.text()
    browser = await desk.signed_in(ACME, "viewer")
    status, text = await _get(browser, desk, "/desk/contacts/C2?review=later")
    assert status == 200
    log = text[text.index("Consent log"):]
    for shown in ("grant", "email · survey · first party", "2026-01-15T18:00:00", "sales key", "written",
                  "consent", "signed at the service counter"):
        assert shown in log, shown
    # The grid now reads the grant through gating: survey (opt-in) by email, first party.
    grid = text[text.index("consent-grid"):text.index("</table>", text.index("consent-grid"))]
    survey_first = grid[grid.index("survey"):].split("</tr>")[0]
    assert survey_first.count("Yes") == 1 and "first" in survey_first


async def test_an_opt_out_recorded_on_the_page_suppresses_the_contact(desk: Desk) -> None:
    assert (await _explain(desk.api, "C1"))["decision"]["decision"] == "send"
    browser = await desk.signed_in(ACME, "sales")
    status, location, _text = await _post(browser, desk, "/desk/contacts/C1/events", {
        "form": "marketing", "action": "opt_out", "method": "phone_call", "note": "asked on the phone",
    }, page="/desk/contacts/C1?review=later")
    assert (status, location) == (303, "/desk/contacts/C1?done=opt_out")
    explained = await _explain(desk.api, "C1")
    assert (explained["decision"]["decision"], explained["decision"]["reason"]) == ("suppress", "opted_out")
    status, text = await _get(browser, desk, "/desk/contacts/C1?done=opt_out&review=later")
    assert "Recorded: opt out." in text and "Opt in to marketing" in text and "Opt out of marketing" not in text
    recorded = [e for e in await desk.api.events(ACME) if e["action"] == "opt_out"]
    assert [(e["external_id"], e["method"], e["actor"], e["note"]) for e in recorded] == [
        ("C1", "phone_call", "sales", "asked on the phone")]
    # The page's own explain table says the same.
    status, text = await _get(browser, desk, "/desk/contacts/C1?review=later&channel=email&class=marketing"
                                             "&party=first&kind=bulk")
    assert status == 200 and "suppress</strong> (opted_out)" in text
    # Opting out again changes nothing, so nothing more is recorded (marketing_opt_in semantics).
    status, location, _text = await _post(browser, desk, "/desk/contacts/C1/events", {
        "form": "marketing", "action": "opt_out", "method": "verbal",
    }, page="/desk/contacts/C1?review=later")
    assert location == "/desk/contacts/C1?done=unchanged"
    assert len([e for e in await desk.api.events(ACME) if e["action"] == "opt_out"]) == 1


async def test_a_button_without_a_method_records_nothing_and_says_so_by_the_field(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "manager")
    status, _location, text = await _post(browser, desk, "/desk/contacts/C1/events", {
        "form": "consent", "action": "grant", "channel": "sms", "class": "survey", "party": "first",
        "method": "", "note": "typed before the mistake",
    }, page="/desk/contacts/C1?review=later")
    assert status == 422
    assert 'aria-describedby="consent-method-error"' in text and "method: " not in text
    assert "is required" in text[text.index('id="consent-method-error"'):][:200]
    assert 'value="typed before the mistake"' in text
    assert [e for e in await desk.api.events(ACME) if e["action"] == "grant"] == []


async def test_grant_block_unblock_and_reauthorize_record_their_events(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "sales")
    page = "/desk/contacts/C4?review=later"
    for data in (
        {"form": "consent", "action": "revoke", "channel": "email", "class": "service", "party": "first"},
        {"form": "block", "action": "block", "channel": "email", "address": "noah@example.com"},
        {"form": "block", "action": "unblock", "channel": "email", "address": "noah@example.com"},
        {"form": "reauth", "action": "grant", "class": "*"},
    ):
        status, location, text = await _post(browser, desk, "/desk/contacts/C4/events",
                                              {**data, "method": "verbal"}, page=page)
        assert status == 303, text
    recorded = [(e["action"], e["channel"], e["class_code"], e["party"], e["address"], e["actor"])
                for e in await desk.api.events(ACME) if e["external_id"] == "C4"]
    assert recorded == [
        ("revoke", "email", "service", "first", None, "sales"),
        ("block", "email", None, None, "noah@example.com", "sales"),
        ("unblock", "email", None, None, "noah@example.com", "sales"),
        ("grant", "sms", "*", "first", None, "sales"),
    ]
    explained = await _explain(desk.api, "C4", **{"class": "service"})
    assert explained["decision"]["reason"] == "consent_revoked"


async def test_each_role_sees_and_does_only_what_it_may(desk: Desk) -> None:
    for role in ("marketer", "viewer"):
        browser = await desk.signed_in(ACME, role)
        status, text = await _get(browser, desk, "/desk/contacts/C1?review=later")
        assert status == 200 and "Consent log" in text, role
        assert _EVENT_FORM not in text and "Reply to Ava" not in text and "<button" in text, role
        # The review prompt tells them someone else must confirm it, with no button.
        status, text = await _get(browser, desk, "/desk/contacts/C1")
        assert "Review Ava Smith's preferences first" in text and _EVENT_FORM not in text, role
        token = await desk.csrf(browser, "/desk/contacts/C1?review=later")
        async with browser.post(desk.url("/desk/contacts/C1/events"), data={
            "csrf_token": token, "form": "marketing", "action": "opt_out", "method": "verbal",
        }, allow_redirects=False) as response:
            assert response.status == 403, role
        assert (await _get(browser, desk, "/desk/contacts/C1/reply"))[0] == 403, role
    assert await desk.api.events(ACME) == []
    browser = await desk.signed_in(ACME, "sales")
    status, text = await _get(browser, desk, "/desk/contacts/C1?review=later")
    assert _EVENT_FORM in text and "Reply to Ava Smith" in text
    for label in ("Opt out of marketing", "Grant", "Revoke", "Block", "Unblock", "Reauthorize texting",
                  "Mark reviewed"):
        assert f">{label}</button>" in text, label
    assert text.count('<select id="marketing-method"') == 1 and '<option value="verbal">' in text


async def test_an_overdue_review_is_asked_for_first_and_goes_away_once_confirmed(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "sales")
    status, text = await _get(browser, desk, "/desk/contacts/C3")
    assert status == 200 and "Review Emma Garcia's preferences first" in text
    assert "never reviewed" in text and "Consent log" not in text
    status, _location, text = await _post(browser, desk, "/desk/contacts/C3/events", {
        "form": "review", "action": "review", "method": "",
    }, page="/desk/contacts/C3")
    assert status == 422 and "Review Emma Garcia's preferences first" in text
    status, location, _text = await _post(browser, desk, "/desk/contacts/C3/events", {
        "form": "review", "action": "review", "method": "verbal", "note": "went through them at the desk",
    }, page="/desk/contacts/C3")
    assert (status, location) == (303, "/desk/contacts/C3?done=review")
    status, text = await _get(browser, desk, location)
    assert "preferences first" not in text and "Consent log" in text and "Recorded: review." in text
    assert "went through them at the desk" in text


async def _reply(browser: aiohttp.ClientSession, desk: Desk, external_id: str, fields: dict[str, str],
                 step: str, token: str | None = None) -> tuple[int, str, str]:
    path = f"/desk/contacts/{external_id}/reply"
    async with browser.get(desk.url(path)) as response:
        form = await response.text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    token = token or _FORM_TOKEN.search(form).group(1)  # type: ignore[union-attr]
    async with browser.post(desk.url(path), data={
        "csrf_token": csrf.group(1), "token": token, "step": step, **fields,
    }, allow_redirects=False) as response:
        return response.status, unescape(await response.text()), token


async def test_a_reply_to_a_contact_who_texted_stop_is_refused_with_the_reason(desk: Desk) -> None:
    api = desk.api
    async with api.twilio_post("/webhooks/twilio/acme-motors/inbound", inbound_sms(ACME_NUMBER, "+12135550101", "STOP")):
        pass
    browser = await desk.signed_in(ACME, "sales")
    before = len(_sent_to(api, "+12135550101"))
    text_fields = {"channel": "sms", "body": "Hi Ava, your car is ready.", "class": "transactional"}
    status, text, _token = await _reply(browser, desk, "C1", text_fields, "check")
    assert status == 200 and "will not be sent (do_not_contact)" in text and ">Send now</button>" not in text
    # Posting "send" anyway (an old tab) is refused by send_individual with the reason.
    status, text, _token = await _reply(browser, desk, "C1", text_fields, "send")
    assert status == 200 and "Not sent: do_not_contact" in text
    assert len(_sent_to(api, "+12135550101")) == before
    deliveries = [e for e in await api.events(ACME) if e["action"] == "block" and e["external_id"] == "C1"]
    assert deliveries, "the STOP was recorded as a block"


async def test_a_reply_reaches_a_contact_who_opted_out_of_marketing_once(desk: Desk) -> None:
    api = desk.api
    browser = await desk.signed_in(ACME, "sales")
    status, _location, _text = await _post(browser, desk, "/desk/contacts/C4/events", {
        "form": "marketing", "action": "opt_out", "method": "verbal",
    }, page="/desk/contacts/C4?review=later")
    assert status == 303
    before = len(_sent_to(api, "noah@example.com"))
    fields = {"channel": "email", "subject": "Your quote", "body": "Hi Noah, the quote is attached.",
              "class": "transactional"}
    status, text, token = await _reply(browser, desk, "C4", fields, "check")
    assert status == 200 and "will be sent" in text and ">Send now</button>" in text
    assert "opted_out" not in text  # rule 6 does not bind a one-to-one reply
    status, text, _token = await _reply(browser, desk, "C4", fields, "send", token)
    assert status == 200 and "<h2 id=\"sent\" class=\"notice\" role=\"status\">Sent</h2>" in text
    assert "noah@example.com (email)" in text and "Hi Noah, the quote is attached." in text
    assert api.sink is not None
    api.sink.call(api.sink.smtp.wait_for(before + 1, timeout=10))
    # The same form sent twice (a double click, a reload): one email, the same answer.
    status, text, _token = await _reply(browser, desk, "C4", fields, "send", token)
    assert status == 200 and "already sent from this form; not sent again" in text
    assert len(_sent_to(api, "noah@example.com")) == before + 1
    sent = _sent_to(api, "noah@example.com")[-1]
    assert "Your quote" in str(sent)


async def test_a_reply_form_with_mistakes_keeps_what_was_typed(desk: Desk) -> None:
    browser = await desk.signed_in(ACME, "sales")
    status, text, _token = await _reply(browser, desk, "C2", {
        "channel": "email", "subject": "", "body": "Typed with care", "class": "transactional"}, "check")
    assert status == 422 and 'aria-describedby="reply-subject-error"' in text and "An email needs a subject." in text
    assert ">Typed with care</textarea>" in text
