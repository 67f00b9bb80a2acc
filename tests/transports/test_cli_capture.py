"""`consentry capture list | smtp | sms`: the table, and real server processes that stop cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from engine.capture.store import read_messages
from engine.cli.capture import capture
from engine.transports import PermanentError, SmtpPool, TwilioSms
from tests.transports.email_samples import make_message

RECORDS = [
    {"channel": "email", "to": "jane@example.com", "from": "service@acme.example",
     "subject": "Your spring service offer", "body": "Hi Jane", "headers": [["Subject", "Your spring service offer"]],
     "message_id": "<c1.r7@acme.example>", "received_at": "2026-11-24T18:00:00.000001Z"},
    {"channel": "sms", "to": "+15550002001", "from": "+15550001000", "body": "Your car is ready.",
     "sid": "SM" + "a" * 32, "received_at": "2026-11-24T18:00:01.000001Z"},
]


def write_store(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record) + "\n" for record in RECORDS)
    (directory / "messages.jsonl").write_text(lines + '{"channel": "sms", "to"', encoding="utf-8")


def test_list_prints_a_table(tmp_path: Path) -> None:
    write_store(tmp_path / "capture")
    result = CliRunner().invoke(capture, ["list", "--store", str(tmp_path / "capture")])
    assert result.exit_code == 0, result.output
    for text in ("2 messages", "jane@example.com", "service@acme.example", "Your spring service offer",
                 "<c1.r7@acme.example>", "+15550002001", "Your car is ready.", "SM" + "a" * 32,
                 "2026-11-24 18:00:00"):
        assert text in result.output


def test_list_filters_by_channel_and_limit(tmp_path: Path) -> None:
    write_store(tmp_path)
    only_sms = CliRunner().invoke(capture, ["list", "--store", str(tmp_path), "--channel", "sms"])
    assert "+15550002001" in only_sms.output and "jane@example.com" not in only_sms.output
    last = CliRunner().invoke(capture, ["list", "--store", str(tmp_path), "--limit", "1"])
    assert "1 messages" in last.output and "jane@example.com" not in last.output


def test_list_of_an_empty_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(capture, ["list", "--store", str(tmp_path / "none")])
    assert result.exit_code == 0
    assert "no messages captured" in result.output


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from engine.cli.capture import capture; capture(prog_name='consentry capture')",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        banner = (await process.stdout.readline()).decode()
    match = re.search(r"listening on \w+://127\.0\.0\.1:(\d+)", banner)
    assert match, f"unexpected first line {banner!r}"
    return process, int(match.group(1))


async def _stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await process.wait() == 0


async def test_smtp_server_process_with_failure_flags(tmp_path: Path) -> None:
    process, port = await _start("smtp", "--port", "0", "--store", str(tmp_path), "--bounce", "gone@example.com")
    try:
        pool = SmtpPool(f"smtp://127.0.0.1:{port}")
        await pool.send_raw("service@acme.example", ["jane@example.com"], make_message())
        try:
            await pool.send_raw("service@acme.example", ["gone@example.com"], make_message(message_id="<b@x>"))
        except PermanentError as error:
            assert error.block_cause == "hard_bounce"
        else:
            raise AssertionError("--bounce did not bounce")
        await pool.close()
    finally:
        await _stop(process)
    assert [m["to"] for m in read_messages(tmp_path)] == ["jane@example.com"]


async def test_sms_server_process_with_failure_flags(tmp_path: Path) -> None:
    process, port = await _start("sms", "--port", "0", "--store", str(tmp_path), "--unsubscribed", "+15550009001")
    try:
        transport = TwilioSms(f"http://127.0.0.1:{port}", "AC" + "0" * 32, "t")
        sid, _ = await transport.send("+15550009002", "+15550001000", "hello")
        try:
            await transport.send("+15550009001", "+15550001000", "hello")
        except PermanentError as error:
            assert error.block_cause == "carrier_unsubscribed"
        else:
            raise AssertionError("--unsubscribed did not refuse")
        await transport.close()
    finally:
        await _stop(process)
    assert [m["sid"] for m in read_messages(tmp_path)] == [sid]


async def _killed(process: asyncio.subprocess.Process) -> None:
    process.kill()  # SIGKILL: no handler, no flush, no goodbye
    async with asyncio.timeout(10):
        assert await process.wait() == -signal.SIGKILL


async def test_an_acknowledged_message_survives_a_kill_9_right_after_the_acknowledgement(tmp_path: Path) -> None:
    """The 250 after DATA and the 201 of the Messages API come only once the message is in
    the file: the sender may forget it as soon as it has the acknowledgement."""
    smtp, smtp_port = await _start("smtp", "--port", "0", "--store", str(tmp_path))
    sms, sms_port = await _start("sms", "--port", "0", "--store", str(tmp_path))
    try:
        pool = SmtpPool(f"smtp://127.0.0.1:{smtp_port}")
        for n in range(5):
            await pool.send_raw("service@acme.example", [f"c{n}@example.com"], make_message(message_id=f"<k{n}@x>"))
        await _killed(smtp)  # the moment the last 250 arrived
        await pool.close()
        transport = TwilioSms(f"http://127.0.0.1:{sms_port}", "AC" + "0" * 32, "t")
        sids = [(await transport.send(f"+1555000900{n}", "+15550001000", "hello"))[0] for n in range(5)]
        await _killed(sms)  # the moment the last 201 arrived
        await transport.close()
    finally:
        for process in (smtp, sms):
            if process.returncode is None:
                process.kill()
                await process.wait()
    stored = read_messages(tmp_path)
    assert [m["to"] for m in stored if m["channel"] == "email"] == [f"c{n}@example.com" for n in range(5)]
    assert [m["sid"] for m in stored if m["channel"] == "sms"] == sids
