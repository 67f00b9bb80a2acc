"""DKIM signing throughput: in the event loop's process vs the campaign's process pool.

    python -m bench.bench_dkim [--count 600] [--processes 2]

The same ~3 KB multipart message, signed `--count` times with a fresh RSA 2048 key
(dkimpy, relaxed/relaxed, the headers of engine/render/signing.py): first one after the
other in this process (the baseline: what a campaign did before the pool), then through
`engine.send.dkim.DkimPool` with `--processes` workers and every signature in flight, as a
campaign's workers await them. Reported: messages/s and the speed-up; the pool's start-up
(spawning workers that import dkimpy and load the key) is measured apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from engine.render import DkimSigner
from engine.send.dkim import DkimPool

MESSAGE = (
    b"From: Acme Service <service@acme.example>\r\nTo: ava@example.com\r\nSubject: Spring offer\r\n"
    b"Date: Mon, 30 Nov 2026 18:00:00 +0000\r\nMessage-ID: <c1.r1.abc@acme.example>\r\n"
    b"List-Unsubscribe: <mailto:unsubscribe@acme.example?subject=u>, <https://links.acme.example/u/t>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    + b"Spring offer for you. " * 60 + b"\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>"
    + b"Spring offer for you. " * 60 + b"</p>\r\n--b--\r\n"
)


def _key() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "key.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
        return path.read_bytes()


async def _pool_rate(signer: DkimSigner, count: int, processes: int) -> tuple[float, float]:
    started = time.perf_counter()
    pool = DkimPool(signer, processes)
    try:
        await pool.sign(MESSAGE)  # every worker started and holding the key
        await asyncio.gather(*(pool.sign(MESSAGE) for _ in range(processes * 2)))
        ready = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(pool.sign(MESSAGE) for _ in range(count)))
        return count / (time.perf_counter() - started), ready
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_dkim", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    signer = DkimSigner("s2026", "acme.example", _key())
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.count):
        signer.sign(MESSAGE)
    inline = args.count / (time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu) * 1000 / args.count
    pooled, ready = asyncio.run(_pool_rate(signer, args.count, args.processes))
    print("| way | messages/s | ms/message | vs in-process |\n|---|---:|---:|---:|")
    print(f"| in-process, one after another (baseline) | {inline:.0f} | {1000 / inline:.2f} | 1.00x |")
    print(f"| DkimPool, {args.processes} processes | {pooled:.0f} | {1000 / pooled:.2f} | {pooled / inline:.2f}x |")
    print(f"\nCPU per signature in-process: {cpu_ms:.2f} ms (load-independent; wall rates above share the machine)")
    print(f"pool start-up (spawn {args.processes} workers, load the key): {ready * 1000:.0f} ms; "
          f"{args.count} messages of {len(MESSAGE)} bytes; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
