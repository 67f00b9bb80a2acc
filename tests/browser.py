"""Debian's headless Chromium, driven by Selenium through Debian's chromium-driver (the test
command installs both). Browser tests run it in a thread: the service under test shares the
test's event loop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

__all__ = ["start_chromium"]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: scripts/ensure-system-deps.sh installs chromium and chromium-driver")
    return found


def start_chromium(profile: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    options = Options()
    options.binary_location = _binary("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
