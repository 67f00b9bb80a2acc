"""`consentry keys ...` in-process, and `consentry serve` as a real process: it listens,
answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.api.conftest import ACME
from tests.cli import consentry, ok

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (http://\S+?)[ ,]")


async def _with_server(url: str, work) -> tuple[int, str]:  # noqa: ANN001
    """Run `consentry serve --port 0`, call `work(base_url)`, SIGTERM it; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "serve", "--port", "0", "--metrics-port", "0", "--db", url,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    output = ""
    try:
        match = None
        while match is None:  # warnings or log lines may come first
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, f"consentry serve exited before listening:\n{output}"
            output += line
            match = LISTENING.search(line)
        await work(match.group(1))
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        output += rest.decode()
        return process.returncode, output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_keys_and_serve(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    tenant_file = tmp_path / "tenant.yaml"
    tenant_file.write_text(ACME, encoding="utf-8")
    ok("db", "init", "--db", url)
    ok("tenant", "apply", str(tenant_file), "--db", url)

    created = ok("keys", "create", "--tenant", "acme-motors", "--role", "manager", "--name", "ops", "--db", url)
    key = created.out.strip()
    assert key.startswith("csk_") and "\n" not in key
    assert "not shown again" in created.err
    [listed] = ok("keys", "list", "--tenant", "acme-motors", "--db", url).out.splitlines()
    assert listed.split("\t")[1:3] == ["manager", "ops"] and listed.endswith("active")
    assert key not in listed
    assert consentry("keys", "create", "--tenant", "nobody", "--role", "sales", "--name", "x", "--db", url).code == 2
    assert consentry("keys", "create", "--tenant", "acme-motors", "--role", "owner", "--name", "x", "--db", url).code == 2

    async def use_key(base: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            headers = {"Authorization": f"Bearer {key}"}
            async with session.get(f"{base}/api/v1/tenant/policy", headers=headers) as response:
                assert response.status == 200
                assert (await response.json())["tenant"] == "acme-motors"

    code, output = asyncio.run(_with_server(url, use_key))
    assert code == 0, output
    assert "stopped" in output

    key_id = listed.split("\t")[0]
    assert "revoked" in ok("keys", "revoke", key_id, "--tenant", "acme-motors", "--db", url).out

    async def key_is_refused(base: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(f"{base}/api/v1/tenant/policy", headers={"Authorization": f"Bearer {key}"}) as response:
                assert response.status == 401

    code, output = asyncio.run(_with_server(url, key_is_refused))
    assert code == 0, output


def test_serve_refuses_to_listen_off_loopback_with_public_default_secrets(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Off loopback, the defaults in the source would let anyone forge unsubscribe links and
    Twilio webhooks: `serve` names what to set and exits 2 before listening."""
    for name in ("CONSENTRY_SECRET", "TWILIO_AUTH_TOKEN", "CONSENTRY_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    # Published at a public URL, though listening on loopback (behind a proxy): still refused.
    monkeypatch.setenv("CONSENTRY_PUBLIC_URL", "https://consent.acme.example")
    refused = consentry("serve", "--port", "0", "--db", url)
    assert refused.code == 2
    assert "CONSENTRY_SECRET, TWILIO_AUTH_TOKEN still have their public defaults" in refused.err


def test_which_settings_must_be_set_off_loopback() -> None:
    from engine.config import Settings

    defaults = Settings()
    assert defaults.unsafe_off_loopback("127.0.0.1") == []
    assert defaults.unsafe_off_loopback("::1") == []
    assert defaults.unsafe_off_loopback("0.0.0.0") == ["CONSENTRY_PUBLIC_URL", "CONSENTRY_SECRET", "TWILIO_AUTH_TOKEN"]
    configured = Settings(public_url="https://consent.acme.example", secret="s" * 64, twilio_auth_token="t" * 32)
    assert configured.unsafe_off_loopback("0.0.0.0") == []
    assert Settings(public_url="https://consent.acme.example").unsafe_off_loopback("127.0.0.1") == [
        "CONSENTRY_SECRET", "TWILIO_AUTH_TOKEN"
    ]
