"""`consentry serve` against hostile clients, as a real process on a free loopback port:
a slowloris of 2,000 connections, slow headers and bodies, JSON nested to exhaust the
parser, over-large bodies, and /metrics kept off the public listener."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from engine.config import Settings
from engine.render import sign_token
from tests.api.conftest import ACME, ACME_CONTACTS
from tests.api.test_json_api import CAMPAIGN
from tests.cli import ok

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
METRICS = re.compile(r"metrics on (http://\S+)")
# Many systems still give a process 1,024 open files; the server must not need more.
SERVER_FILES = 1024
ATTACKERS = 2000


@dataclass
class Served:
    host: str
    port: int
    metrics_url: str
    key: str
    output: list[str]

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, str]:
    """A SQLite database with Acme, its contacts and a marketer's API key."""
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    (tmp_path / "tenant.yaml").write_text(ACME, encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(ACME_CONTACTS, encoding="utf-8")
    ok("db", "init", "--db", url)
    ok("tenant", "apply", str(tmp_path / "tenant.yaml"), "--db", url)
    ok("contacts", "import", str(tmp_path / "contacts.csv"), "--tenant", "acme-motors", "--db", url)
    key = ok("keys", "create", "--tenant", "acme-motors", "--role", "marketer", "--name", "t", "--db", url).out.strip()
    return url, key


@contextlib.asynccontextmanager
async def serving(database: tuple[str, str], **env: str) -> AsyncIterator[Served]:
    """`consentry serve --port 0` limited to SERVER_FILES open files, until the block ends."""
    url, key = database

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILES, SERVER_FILES))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "--port", "0", "--metrics-port", "0", "--db", url,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, preexec_fn=limit_files,
    )  # fmt: skip
    output: list[str] = []
    drain = None
    try:
        listening = metrics = None
        while listening is None or metrics is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "consentry serve exited before listening:\n" + "".join(output)
            output.append(line)
            listening = listening or LISTENING.search(line)
            metrics = metrics or METRICS.search(line)

        async def keep_reading() -> None:  # a full pipe would block the server
            while line := await process.stdout.readline():
                output.append(line.decode())

        drain = asyncio.create_task(keep_reading())
        yield Served(listening.group(1), int(listening.group(2)), metrics.group(1), key, output)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        if drain is not None:
            await drain


async def get_healthz(served: Served) -> tuple[float, bytes]:
    """GET /healthz on a new connection: (seconds to the whole answer, status line)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(served.host, served.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: consentry\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    return time.monotonic() - started, answer.split(b"\r\n", 1)[0]


def _files_for_the_attack() -> None:
    """The attacking process holds every connection: raise its soft open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ATTACKERS + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


async def test_a_slowloris_of_2000_connections_does_not_take_healthz_offline(database) -> None:
    """2,000 connections each send a partial request and one more header line a second,
    and come back when the server closes them (tests/api/slowloris.py, its own process).
    The server has 1,024 open files, fewer than the attack's connections: without the cap
    and the eviction of the longest-waiting connection, asyncio stops accepting and
    /healthz times out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= ATTACKERS + 512, f"the attack needs {ATTACKERS + 512} open files"
    async with serving(database) as served:
        attack = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.api.slowloris", served.host, str(served.port), str(ATTACKERS),
            cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, preexec_fn=_files_for_the_attack,
        )  # fmt: skip
        state: dict[str, int] = {}

        async def follow() -> None:
            while line := await attack.stdout.readline():
                state.update(json.loads(line))

        following = asyncio.create_task(follow())
        try:
            deadline = time.monotonic() + 10
            while state.get("connected", 0) < ATTACKERS and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert state.get("connected", 0) >= ATTACKERS, state
            timings = []
            for _ in range(5):
                held = state["open"]
                seconds, status = await asyncio.wait_for(get_healthz(served), 10)
                timings.append(seconds)
                assert status == b"HTTP/1.1 200 OK"
                assert held >= 500, state  # the attack holds while /healthz answers
                await asyncio.sleep(0.5)
        finally:
            attack.stdin.close()
            await asyncio.wait_for(attack.wait(), 30)
            await following
        print(f"/healthz under attack: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}; {state}")
        assert max(timings) < 1.0, timings
        assert state["closed_by_server"] > 0, state  # the cap closed the longest-waiting attackers


async def test_slow_headers_and_bodies_are_cut_off_idle_keepalive_is_not(database) -> None:
    async with serving(database, CONSENTRY_HTTP_HEADER_TIMEOUT_S="1", CONSENTRY_HTTP_BODY_TIMEOUT_S="1") as served:

        async def seconds_until_closed(first: bytes, trickle: bytes | None) -> float:
            started = time.monotonic()
            reader, writer = await asyncio.open_connection(served.host, served.port)
            writer.write(first)
            while True:
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(1 << 16), 0.3):
                        break
                if trickle:
                    writer.write(trickle)
                assert time.monotonic() - started < 10, "the server kept a slow connection open"
            writer.close()
            return time.monotonic() - started

        silent, slow = await asyncio.gather(
            seconds_until_closed(b"", None),
            seconds_until_closed(b"GET /healthz HTTP/1.1\r\n", b"X-Slow: a\r\n"),
        )
        assert 0.9 < silent < 3 and 0.9 < slow < 3, (silent, slow)

        # A slow body: 408 naming the limit, and the connection closes.
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(
            b"POST /api/v1/campaigns/check HTTP/1.1\r\nHost: consentry\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"campaign\":"
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"did not arrive within 1 s" in answer

        # A kept-alive connection may wait longer than the header deadline between requests.
        reader, writer = await asyncio.open_connection(served.host, served.port)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: consentry\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            await reader.readexactly(length)
            await asyncio.sleep(1.5)
        writer.close()


async def test_deep_huge_and_oversized_json_are_problems_never_500(database) -> None:
    async with serving(database) as served, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        check = f"{served.base}/api/v1/campaigns/check"
        auth = {"Authorization": f"Bearer {served.key}", "Content-Type": "application/json"}

        async def post(body: bytes) -> tuple[int, dict]:
            async with session.post(check, data=body, headers=auth) as response:
                return response.status, await response.json()

        status, problem = await post(b"[" * 100_000)
        assert (status, problem["status"], problem["error"]) == (400, 400, "the body nests JSON deeper than 32 levels (the limit)")
        status, problem = await post(b'{"a":' * 40 + b"1" + b"}" * 40)  # valid JSON, too deep
        assert status == 400 and "32 levels" in problem["error"]
        status, problem = await post(b'{"campaign": ' + b"9" * 5000 + b"}")  # past int's digit limit
        assert status == 422 and "not JSON" in problem["errors"][0]["message"]
        status, problem = await post(b'{"pad": "' + b"x" * (2 << 20) + b'"}')
        assert (status, problem["status"], problem["error"]) == (413, 413, "Maximum request body size 1048576 exceeded.")

        # The service still works, and a real definition is still checked.
        async with session.post(check, json=CAMPAIGN, headers={"Authorization": auth["Authorization"]}) as response:
            assert response.status == 200, await response.text()
        assert not any("Traceback" in line or " 500 " in line for line in served.output), served.output


async def test_metrics_are_not_on_the_public_listener(database) -> None:
    url, _key = database
    with sqlite3.connect(url.split("///", 1)[1]) as db:
        [(tenant_id, contact_id)] = db.execute(
            "SELECT t.id, c.id FROM tenants t JOIN contacts c ON c.tenant_id = t.id WHERE c.external_id = 'C1'"
        ).fetchall()
    token = sign_token(Settings().secret.encode(), tenant_id, None, contact_id, "email")
    async with serving(database) as served, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Something with a tenant label: a one-click unsubscribe counts its ledger event.
        async with session.post(f"{served.base}/u/{token}", data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 200
        for path in ("/metrics", "/metrics/", "/api/v1/metrics"):
            async with session.get(served.base + path) as response:
                assert response.status == 404
                assert "acme-motors" not in await response.text()
        assert served.metrics_url.startswith("http://127.0.0.1:")
        async with session.get(served.metrics_url) as response:
            assert response.status == 200
            assert 'tenant="acme-motors"' in await response.text()
