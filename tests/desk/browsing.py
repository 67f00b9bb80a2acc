"""The desk in a real browser: Debian's headless Chromium (tests/browser.py), signed in through
the real form, each page checked the same way (docs/desk.md, "Accessibility and browser
tests"):

- a full-page screenshot at 1280 px wide, `artifacts/desk/<name>.png`, and one at 390 px
  (a phone), `artifacts/desk/<name>-390.png` (artifacts/ is git-ignored);
- at 390 px the page must not scroll sideways (wide tables scroll inside their own box);
- axe-core, run in the page at both widths, must find no serious or critical violation.

Selenium blocks, and the service under test runs on the test's event loop, so tests call
these helpers in a thread: `await asyncio.to_thread(check_page, driver, "settings")`.

Pages load slowly on a busy machine, and a click returns before the page it asked for has
arrived: a lookup right after it can miss (the new page has not rendered) or hit the old
page, whose elements go stale a moment later. So every test looks elements up with `find`
(waits for the page to finish loading and the element to be there), and follows a link or
submits a form with `click_and_wait` (waits until the old page is gone and the new one has
loaded) or opens a URL with `go`.

axe-core is the version pinned in scripts/ensure-system-deps.sh, which `make test` runs and
which puts it in .cache/axe-core/<version>/axe.min.js.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import start_chromium
from tests.desk.conftest import PASSWORD

__all__ = ["ARTIFACTS", "DESKTOP", "PHONE", "axe_violations", "check_page", "chromium", "click_and_wait", "find",
           "go", "sign_in", "visit", "wait"]

_CHECKOUT = Path(__file__).resolve().parents[2]
ARTIFACTS = _CHECKOUT / "artifacts" / "desk"
DESKTOP = 1280
PHONE = 390  # an iPhone 12-15 in portrait: the narrowest screen the desk promises to work on
_HEIGHT = 900
_SERIOUS = frozenset({"serious", "critical"})
_WAIT = 15  # seconds for a page to answer a click: generous, on a machine shared with other work


@functools.cache
def _axe_source() -> str:
    script = (_CHECKOUT / "scripts" / "ensure-system-deps.sh").read_text(encoding="utf-8")
    found = re.search(r"^AXE_CORE_VERSION=(\S+)$", script, re.MULTILINE)
    assert found, "scripts/ensure-system-deps.sh pins no AXE_CORE_VERSION"
    path = _CHECKOUT / ".cache" / "axe-core" / found.group(1) / "axe.min.js"
    if not path.is_file():
        pytest.fail(f"axe-core {found.group(1)} is missing ({path.relative_to(_CHECKOUT)}): "
                    "run `bash scripts/ensure-system-deps.sh` (make test does)")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for a test module (starting one takes a second or two)."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium"), DESKTOP, _HEIGHT)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: webdriver.Chrome, base_url: str, tenant: str, role: str, password: str = PASSWORD) -> str:
    """Sign in as the desk user `role` of `tenant` (tests/desk/conftest.py makes one per role)
    through the sign-in form, as a person would; returns the path the desk sent them to.

    Any earlier session is dropped first: cookies ignore ports, so a cookie of another
    test's server on 127.0.0.1 would otherwise come along."""
    go(driver, f"{base_url}/desk/sign-in")
    driver.delete_all_cookies()
    go(driver, f"{base_url}/desk/sign-in")
    for name, value in (("tenant", tenant), ("username", role), ("password", password)):
        field = find(driver, f"form[action='/desk/sign-in'] [name={name}]")
        field.clear()
        field.send_keys(value)
    click_and_wait(driver, find(driver, "form[action='/desk/sign-in'] button[type=submit]"))
    return _path(driver.current_url, base_url)


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    """A wait with the harness's generous timeout, for conditions `find` does not cover (a
    text the page's script fills in); an element looked up again while the page replaces
    it is tried again, not an error."""
    return WebDriverWait(driver, _WAIT, ignored_exceptions=(StaleElementReferenceException,))


# How chromedriver reports a page caught half torn down by a navigation, besides a stale
# element: an unknown error carrying Chrome's own message (seen on a loaded machine).
_TORN_DOWN = ("does not belong to the document", "Cannot find context with specified id",
              "Execution context was destroyed", "document unloaded")


def _torn_down(error: WebDriverException) -> bool:
    return any(part in (error.msg or "") for part in _TORN_DOWN)


def _loaded(driver: webdriver.Chrome) -> None:
    def complete(d: webdriver.Chrome) -> bool:
        try:
            return bool(d.execute_script("return document.readyState") == "complete")
        except WebDriverException as error:
            if _torn_down(error):
                return False  # the page is on its way out: ask the next one
            raise

    wait(driver).until(complete)


def _replaced(page: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """The old page's root is gone: stale, or its document already torn down."""
    stale = expected_conditions.staleness_of(page)

    def check(driver: webdriver.Chrome) -> bool:
        try:
            return stale(driver)
        except WebDriverException as error:
            if _torn_down(error):
                return True
            raise

    return check


def go(driver: webdriver.Chrome, url: str) -> None:
    """Open `url` and wait until it has loaded."""
    driver.get(url)
    _loaded(driver)


def find(driver: webdriver.Chrome, selector: str, by: str = By.CSS_SELECTOR) -> WebElement:
    """The element `selector` (CSS unless `by` says otherwise) of the open page, once the
    page has loaded and the element is there; fails after the harness's timeout."""
    _loaded(driver)
    try:
        element: WebElement = wait(driver).until(expected_conditions.presence_of_element_located((by, selector)))
    except TimeoutException:
        pytest.fail(f"no {selector!r} ({by}) on {driver.current_url} within {_WAIT} s")
    return element


def click_and_wait(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click `element` (a link or a form's button) and wait until the browser has left the
    page for the one the click asked for and that page has loaded: the old page's root
    going stale is the sign the new page replaced it (its URL may be the same, and a wait
    for the URL to change ends before the new page is there)."""
    page = driver.find_element(By.TAG_NAME, "html")
    WebDriverWait(driver, _WAIT).until(expected_conditions.element_to_be_clickable(element))
    what = " ".join(element.text.split()) or element.tag_name
    element.click()
    try:
        WebDriverWait(driver, _WAIT).until(_replaced(page))
    except TimeoutException:
        pytest.fail(f"clicking {what!r} did not leave {driver.current_url} within {_WAIT} s")
    _loaded(driver)


def _path(url: str, base_url: str) -> str:
    return url.removeprefix(base_url)


def visit(driver: webdriver.Chrome, url: str, name: str) -> None:
    """Open `url` and check it (`check_page`)."""
    go(driver, url)
    check_page(driver, name)


def check_page(driver: webdriver.Chrome, name: str) -> None:
    """Screenshots at both widths, no sideways scrolling at 390 px, and no serious or
    critical axe-core violation at either width; fails listing every problem found."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _loaded(driver)
    problems: list[str] = []
    try:
        for width, suffix in ((DESKTOP, ""), (PHONE, f"-{PHONE}")):
            _emulate(driver, width)
            _screenshot(driver, ARTIFACTS / f"{name}{suffix}.png")
            if width == PHONE:
                scroll, inner = driver.execute_script(
                    "return [document.documentElement.scrollWidth, window.innerWidth]")
                # A page wider than the screen shows as a wider layout viewport (the phone
                # zooms out) or as sideways scrolling; either way it is not usable at 390 px.
                if inner != PHONE or scroll > inner:
                    problems.append(f"at {PHONE} px the page lays out {max(scroll, inner)} px wide "
                                    f"(a viewport meta tag and no element wider than the screen are needed): "
                                    f"{_widest(driver)}")
            problems += [f"at {width} px: {line}" for line in axe_violations(driver)]
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not problems, f"{name} ({driver.current_url}):\n" + "\n".join(problems)


def _emulate(driver: webdriver.Chrome, width: int) -> None:
    # A device-metrics override, not a window resize: a window has a minimum width on some
    # platforms, and `mobile` makes the page's viewport meta tag count, as on a phone.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": _HEIGHT, "deviceScaleFactor": 1, "mobile": width == PHONE,
    })


def _screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page, not only what fits in the window."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    path.write_bytes(base64.b64decode(shot["data"]))


def _widest(driver: webdriver.Chrome) -> str:
    """The elements that stick out past the phone's width, to say where to look."""
    found = driver.execute_script("""
        var out = [], limit = arguments[0];
        document.querySelectorAll('body *').forEach(function (e) {
          var r = e.getBoundingClientRect();
          if (r.right > limit) {
            out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                     (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') +
                     ' right=' + Math.round(r.right));
          }
        });
        return out.slice(0, 5);""", PHONE)
    return "; ".join(found) or "no single element"


def axe_violations(driver: webdriver.Chrome) -> list[str]:
    """axe-core's serious and critical violations on the open page, one line per element.

    The script is added through WebDriver, which the page's Content-Security-Policy does not
    govern (it allows only the desk's own scripts); axe itself uses no eval."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(_axe_source())
    result: dict[str, Any] = driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']})
          .then(function (r) { done({violations: r.violations}); })
          .catch(function (e) { done({error: String(e)}); });""")
    assert "error" not in result, f"axe-core failed to run: {result['error']}"
    lines = []
    for violation in result["violations"]:
        if violation["impact"] not in _SERIOUS:
            continue
        for node in violation["nodes"]:
            lines.append(f"{violation['impact']} {violation['id']}: {violation['help']} at "
                         f"{json.dumps(node['target'])}: {node['html'][:160]}")
    return lines
