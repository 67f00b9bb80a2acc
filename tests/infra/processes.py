"""`consentry` processes for tests that watch them from outside: started with their output in
files, waited on for a line they print, scraped over HTTP while they run."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


class Consentry:
    """`python -m engine ARGS...` in its own process group, stdout and stderr in files."""

    def __init__(self, directory: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.out = directory / f"{name}.out"
        self.err = directory / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=out, stderr=err,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8") + self.err.read_text(encoding="utf-8")

    def wait_for_line(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        """The first match of `pattern` in what it printed; fails if it exits or takes too long."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} printed no {pattern!r} within {timeout_s} s:\n{self.text()}")
            time.sleep(0.05)

    def wait(self, timeout_s: float = 120) -> int:
        return self.process.wait(timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def families(text: str) -> dict[str, list]:
    """Metric family name → its samples (a family with no sample is left out)."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        if family.samples:
            found[family.name] = family.samples
    return found


class Scraper:
    """Scrapes a URL every `interval_s` on a thread, as Prometheus would, keeping the last
    answer; `stop()` returns it."""

    def __init__(self, url: str, interval_s: float = 0.2) -> None:
        self.url = url
        self.interval_s = interval_s
        self.last = ""
        self.count = 0
        self.errors: list[BaseException] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.last = scrape(self.url)
                self.count += 1
            except (OSError, http.client.HTTPException) as exc:  # not listening yet, or gone
                self.errors.append(exc)
            self._stopped.wait(self.interval_s)

    def stop(self) -> str:
        self._stopped.set()
        self._thread.join(30)
        return self.last
