"""Signing in to the desk, the session cookie, CSRF, and who sees what.

`PAGE` is a desk address with no page: signed out it sends the browser to sign in, signed
in it is a 404 page with the desk's header (navigation, who is signed in, the sign-out form
and its CSRF token), which is all these tests need.
"""

from __future__ import annotations

import io
import os
import sys

from engine.api.keys import revoke_api_key
from engine.desk.users import disable_user
from tests.api.conftest import CLOCK
from tests.cli import Result
from tests.cli import consentry as run_cli
from tests.desk.conftest import PASSWORD, Desk

PAGE = "/desk/no-such-page"


async def _location(browser, desk: Desk, path: str) -> tuple[int, str]:  # noqa: ANN001
    async with browser.get(desk.url(path), allow_redirects=False) as response:
        return response.status, response.headers.get("Location", "")


async def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(desk: Desk) -> None:
    browser = desk.client()
    assert await _location(browser, desk, "/desk/contacts?q=ava") == (
        303, "/desk/sign-in?next=%2Fdesk%2Fcontacts%3Fq%3Dava")
    async with browser.post(desk.url("/desk/sign-in"), data={
        "tenant": "acme-motors", "username": "sales", "password": PASSWORD, "next": "/desk/contacts?q=ava",
    }, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/desk/contacts?q=ava"
        cookie = response.cookies["consentry_desk"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/desk"
    # Plain HTTP on loopback: a Secure cookie would never come back.
    assert not cookie["secure"]


async def test_each_role_lands_where_it_may_work_and_sees_only_its_navigation(desk: Desk) -> None:
    expected = {
        "admin": ("/desk/campaigns", {"Campaigns", "Contacts", "Settings"}),
        "manager": ("/desk/campaigns", {"Campaigns", "Contacts", "Settings"}),
        "marketer": ("/desk/campaigns", {"Campaigns", "Contacts"}),
        "sales": ("/desk/contacts", {"Contacts"}),
        "viewer": ("/desk/campaigns", {"Campaigns", "Contacts"}),
    }
    for role, (home, navigation) in expected.items():
        browser = await desk.signed_in("acme-motors", role)
        assert await _location(browser, desk, "/desk") == (303, home)
        async with browser.get(desk.url(PAGE)) as response:
            text = await response.text()
            assert response.status == 404, role
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert response.headers["Cache-Control"] == "no-store"
        shown = {label for label in ("Campaigns", "Contacts", "Settings") if f">{label}</a>" in text}
        assert shown == navigation, role
        assert f"user {role} ({role})" in text


async def test_a_wrong_password_or_key_is_refused_and_guessing_is_slowed_down(desk: Desk) -> None:
    browser = desk.client()
    for attempt in range(5):
        async with browser.post(desk.url("/desk/sign-in"), data={
            "tenant": "acme-motors", "username": "admin", "password": f"guess {attempt}",
        }, allow_redirects=False) as response:
            assert response.status == 401
            assert "did not match an account" in await response.text()
            assert "consentry_desk" not in response.cookies
    # The sixth attempt is refused even with the right password; other accounts still work.
    async with browser.post(desk.url("/desk/sign-in"), data={
        "tenant": "acme-motors", "username": "admin", "password": PASSWORD,
    }, allow_redirects=False) as response:
        assert response.status == 429
        assert "Too many failed attempts" in await response.text()
    await desk.signed_in("acme-motors", "manager")
    # A user name of another tenant is not an account of this one.
    async with desk.client().post(desk.url("/desk/sign-in"), data={
        "tenant": "bravo-cars", "username": "nobody", "password": PASSWORD,
    }, allow_redirects=False) as response:
        assert response.status == 401
    async with desk.client().post(desk.url("/desk/sign-in"), data={"api_key": "csk_not-a-key"},
                                  allow_redirects=False) as response:
        assert response.status == 401


async def test_an_api_key_signs_in_with_its_role_and_revoking_it_ends_the_session(desk: Desk) -> None:
    browser = desk.client()
    async with browser.post(desk.url("/desk/sign-in"), data={"api_key": desk.api.keys[("acme-motors", "marketer")]},
                            allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (303, "/desk")
    async with browser.get(desk.url(PAGE)) as response:
        assert response.status == 404
        text = await response.text()
    assert "API key &#39;marketer key&#39; (marketer)" in text
    assert ">Settings</a>" not in text
    async with desk.api.engine.begin() as conn:
        [record] = [r for r in await _keys(conn) if r.name == "marketer key"]
        await revoke_api_key(conn, "acme-motors", record.id, CLOCK)
    assert (await _location(browser, desk, PAGE))[0] == 303


async def _keys(conn):  # noqa: ANN001, ANN202
    from engine.api.keys import list_api_keys

    return await list_api_keys(conn, "acme-motors")


async def test_disabling_a_user_and_signing_out_end_sessions_at_once(desk: Desk) -> None:
    first, second = await desk.signed_in("acme-motors", "admin"), await desk.signed_in("acme-motors", "admin")
    token = await desk.csrf(first, PAGE)
    async with first.post(desk.url("/desk/sign-out"), data={"csrf_token": token}, allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (303, "/desk/sign-in")
    assert (await _location(first, desk, PAGE))[0] == 303
    # The other browser's session is its own.
    assert (await _location(second, desk, PAGE))[0] == 404
    async with desk.api.engine.begin() as conn:
        await disable_user(conn, "acme-motors", "admin", CLOCK)
    assert (await _location(second, desk, PAGE))[0] == 303


async def test_a_form_without_the_session_token_or_from_another_site_changes_nothing(desk: Desk) -> None:
    browser = await desk.signed_in("acme-motors", "admin")
    token = await desk.csrf(browser, PAGE)
    for data, headers in (({}, {}), ({"csrf_token": "forged"}, {}),
                          ({"csrf_token": token}, {"Origin": "https://evil.example"})):
        async with browser.post(desk.url("/desk/sign-out"), data=data, headers=headers,
                                allow_redirects=False) as response:
            assert response.status == 403
            assert "did not come from this site" in await response.text()
    assert (await _location(browser, desk, PAGE))[0] == 404
    # A sign-in posted from another site is refused too (login CSRF).
    async with desk.client().post(desk.url("/desk/sign-in"), headers={"Origin": "https://evil.example"}, data={
        "tenant": "acme-motors", "username": "admin", "password": PASSWORD,
    }, allow_redirects=False) as response:
        assert response.status == 403


async def test_next_never_leaves_the_desk(desk: Desk) -> None:
    for target in ("https://evil.example/desk", "//evil.example/desk", "/api/v1/contacts", "/desk//evil"):
        async with desk.client().post(desk.url("/desk/sign-in"), data={
            "tenant": "acme-motors", "username": "viewer", "password": PASSWORD, "next": target,
        }, allow_redirects=False) as response:
            assert response.headers["Location"] in ("/desk", "/desk//evil"), target
            assert not response.headers["Location"].startswith("//")


def test_users_are_added_listed_and_disabled_from_the_command_line(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    # The real command line, run in-process (tests/cli.py) instead of seven interpreter
    # start-ups: the same click commands, exit codes, stdout and stderr. Only the database
    # comes from the environment, as it would in a shell with nothing else set.
    for name in [name for name in os.environ if name.startswith("CONSENTRY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")

    def consentry(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return run_cli(*args)

    assert consentry("db", "init").code == 0
    tenant = tmp_path / "tenant.yaml"
    tenant.write_text("tenant: t1\nname: T1\ncountry: US\ntimezone: America/New_York\n", encoding="utf-8")
    assert consentry("tenant", "apply", str(tenant)).code == 0
    added = consentry("users", "add", "--tenant", "t1", "--username", "ava", "--role", "sales", "--password-stdin",
                      stdin=PASSWORD + "\n")
    assert added.code == 0, added.err
    assert added.out.strip() == "desk user ava of tenant t1, role sales"
    short = consentry("users", "add", "--tenant", "t1", "--username", "bo", "--role", "sales", "--password-stdin",
                      stdin="short\n")
    assert short.code != 0 and "at least 12 characters" in short.err
    again = consentry("users", "add", "--tenant", "t1", "--username", "ava", "--role", "admin", "--password-stdin",
                      stdin=PASSWORD + "\n")
    assert again.code != 0 and "already has a user 'ava'" in again.err
    assert consentry("users", "disable", "ava", "--tenant", "t1").code == 0
    [line] = consentry("users", "list", "--tenant", "t1").out.splitlines()
    assert line.startswith("ava\tsales\tcreated ") and "\tdisabled " in line
