"""The harness's checks fail where they should: a page with an unlabelled input, an image
without text and a block wider than a phone, opened from a data: URL (no server needed)."""

from __future__ import annotations

import pytest
from selenium import webdriver

from tests.desk.browsing import ARTIFACTS, check_page, chromium  # noqa: F401 - the fixture

_BAD_PAGE = (
    "data:text/html,<!doctype html><html lang=en><head><title>bad</title>"
    "<meta name=viewport content='width=device-width,initial-scale=1'></head><body><main><h1>Bad</h1>"
    "<input id=unlabelled><img src=x.png><div id=wide style='width:900px'>wide</div></main></body></html>"
)


def test_check_page_lists_serious_violations_and_sideways_scrolling(chromium: webdriver.Chrome) -> None:  # noqa: F811
    chromium.get(_BAD_PAGE)
    with pytest.raises(AssertionError) as failure:
        check_page(chromium, "harness-self-check")
    report = str(failure.value)
    for width in (1280, 390):
        assert f'at {width} px: critical label: Form elements must have labels at ["#unlabelled"]' in report
        assert f'at {width} px: critical image-alt: Images must have alternative text at ["img"]' in report
    assert "at 390 px the page lays out 908 px wide" in report and "div#wide right=908" in report
    assert (ARTIFACTS / "harness-self-check.png").stat().st_size > 0
    assert (ARTIFACTS / "harness-self-check-390.png").stat().st_size > 0
