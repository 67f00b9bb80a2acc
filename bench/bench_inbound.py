"""Benchmark of the inbound listener: DSN bounces processed per second, on SQLite.

    .venv/bin/python -m bench.bench_inbound                  # 5,000 bounces, 8 connections
    .venv/bin/python -m bench.bench_inbound --count 1000 --connections 4

1. A campaign of `--count` emails goes out through the capture SMTP server (its own
   process), so every bounce below names a real delivery through its VERP token.
2. `consentry inbound smtp` runs in its own process; `--connections` aiosmtplib clients
   deliver one Postfix-style DSN (5.1.1) per delivery: parse (flufl.bounce), verify the
   token, update the delivery row and record the block, commit, then 250.
3. The floor in the same run: the same client and messages against a bare aiosmtpd that
   answers 250 and does nothing (bench/bench_transport.py's reference sink).

Afterwards every delivery must be `failed` with one `hard_bounce` block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from bench.bench_send import prepare, send
from bench.bench_transport import ServerProcess, capture_server, reference_sink


def dsn(to: str, recipient: str) -> bytes:
    """A Postfix bounce of `recipient`'s message, returned to its envelope sender `to`."""
    return (
        f"From: MAILER-DAEMON@relay.example (Mail Delivery System)\r\nTo: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: {recipient}\r\nSubject: Your offer\r\n\r\n--B--\r\n"
    ).encode()


async def deliver_all(port: int, messages: list[tuple[str, bytes]], connections: int) -> float:
    """Deliver every (rcpt, data) over `connections` sessions; returns the wall seconds."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in messages:
        queue.put_nowait(item)

    async def client() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
        await smtp.connect()
        try:
            while not queue.empty():
                rcpt, data = queue.get_nowait()
                await smtp.sendmail("", [rcpt], data)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_inbound", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="consentry-inbound-") as tmp:
        directory = Path(tmp)
        url = prepare(directory, args.count)
        store = directory / "capture"
        capture = capture_server("smtp", store, 0)
        try:
            sent = send(url, directory, "email", "bounce-bench", capture.port, 16)
        finally:
            capture.stop()
        records = [json.loads(line) for line in (store / "messages.jsonl").read_text().splitlines()]
        messages = [(record["from"], dsn(record["from"], record["to"])) for record in records]
        assert len(messages) == args.count == sent["sent"], (len(messages), sent)

        floor_server = reference_sink("aiosmtpd")
        try:
            floor_s = asyncio.run(deliver_all(floor_server.port, messages, args.connections))
        finally:
            floor_server.stop()
        listener = ServerProcess("inbound", [sys.executable, "-m", "engine", "inbound", "smtp", "--port", "0", "--db", url])
        try:
            wall_s = asyncio.run(deliver_all(listener.port, messages, args.connections))
            cpu_s = listener.cpu_seconds()
        finally:
            listener.stop()
        database = sqlite3.connect(url.split("///", 1)[1])
        blocks = database.execute("select count(*) from consent_events where cause = 'hard_bounce'").fetchone()[0]
        failed = database.execute("select count(*) from deliveries where state = 'failed' and feedback = 'hard_bounce'").fetchone()[0]
        database.close()
        if blocks != args.count or failed != args.count:
            raise SystemExit(f"expected {args.count} blocks and failed rows, found {blocks} and {failed}")
        print(f"inbound DSNs, SQLite, {args.count:,} bounces over {args.connections} connections (pid {os.getpid()}):")
        print(f"  listener: {args.count / wall_s:,.0f} bounces/s wall ({wall_s:.1f} s), "
              f"{args.count / cpu_s:,.0f} per listener CPU s")
        print(f"  floor (aiosmtpd answering 250, nothing recorded): {args.count / floor_s:,.0f} messages/s")
        print(f"  listener / floor: {floor_s / wall_s:.2f}x; every delivery failed with one hard_bounce block")


if __name__ == "__main__":
    main()
