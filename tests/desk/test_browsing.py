"""The harness's checks fail where they should: a page with an unlabelled input, an image
without text and a block wider than a phone, opened from a data: URL (no server needed).
And its waits wait: a click's page that arrives in parts is whole before the test goes on."""

from __future__ import annotations

import http.server
import threading

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.desk.browsing import ARTIFACTS, check_page, chromium, click_and_wait, find, go  # noqa: F401 - the fixture

_BAD_PAGE = (
    "data:text/html,<!doctype html><html lang=en><head><title>bad</title>"
    "<meta name=viewport content='width=device-width,initial-scale=1'></head><body><main><h1>Bad</h1>"
    "<input id=unlabelled><img src=x.png><div id=wide style='width:900px'>wide</div></main></body></html>"
)


def test_check_page_lists_serious_violations_and_sideways_scrolling(chromium: webdriver.Chrome) -> None:  # noqa: F811
    go(chromium, _BAD_PAGE)
    with pytest.raises(AssertionError) as failure:
        check_page(chromium, "harness-self-check")
    report = str(failure.value)
    for width in (1280, 390):
        assert f'at {width} px: critical label: Form elements must have labels at ["#unlabelled"]' in report
        assert f'at {width} px: critical image-alt: Images must have alternative text at ["img"]' in report
    assert "at 390 px the page lays out 908 px wide" in report and "div#wide right=908" in report
    assert (ARTIFACTS / "harness-self-check.png").stat().st_size > 0
    assert (ARTIFACTS / "harness-self-check-390.png").stat().st_size > 0


class _TwoPartPage(http.server.BaseHTTPRequestHandler):
    """GET / is a page whose link to /next is followed late. /next arrives in two parts, as a
    slow page does: the first already replaces the old page; the rest (the `#late`
    paragraph) is held back until the browser, parsing the first part, asks for /release."""

    released: threading.Event

    def do_GET(self) -> None:
        if self.path == "/release":
            self.released.set()
            self._answer(b"")
            return
        if self.path == "/":
            # The link leaves only a moment after the click, as a busy browser does: a test
            # that looked for the next page as soon as the click returned would miss it.
            self._answer(b"<!doctype html><title>first</title><a id=next href=/next>next</a><script>"
                         b"document.getElementById('next').addEventListener('click', function (e) {"
                         b" e.preventDefault(); setTimeout(function () { location.href = '/next'; }, 500); });"
                         b"</script>")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"<!doctype html><title>next</title><p>loading <img src=/release alt=''>" + b" " * 4096)
        self.wfile.flush()
        if self.released.wait(timeout=30):  # bounded: a browser that never asks must not hang the test
            self.wfile.write(b"<p id=late>here at last</p>")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def test_click_and_wait_waits_for_the_whole_of_a_slow_page(chromium: webdriver.Chrome) -> None:  # noqa: F811
    handler = type("Handler", (_TwoPartPage,), {"released": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        go(chromium, f"http://127.0.0.1:{server.server_port}/")
        click_and_wait(chromium, find(chromium, "#next"))
        # Loaded, not merely begun: the part sent last is there without a further wait.
        assert chromium.execute_script("return document.readyState") == "complete"
        assert chromium.find_element(By.ID, "late").text == "here at last"
        assert chromium.title == "next"
    finally:
        server.shutdown()
        server.server_close()
