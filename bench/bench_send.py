"""Benchmark of `campaign send` against the capture servers, with its ceiling and baseline.

    .venv/bin/python -m bench.bench_send                       # 100,000 email + 100,000 SMS
    .venv/bin/python -m bench.bench_send --sizes 10000 100000 --latency-sizes 5000

Every capture server runs in its own process (`consentry capture smtp|sms --latency-ms L`).
For each channel, in one run:

1. `campaign send` (a fresh process: gate, record, render, dispatch, record) on audiences of
   each `--sizes`, with no added latency: messages/s and the process's peak RSS (flat memory:
   the RSS of the largest over the smallest audience);
2. the transport ceiling on the same server: bare aiosmtplib over `--concurrency` reused
   connections sending pre-rendered bytes, or bare `messages.create_async` at the same
   concurrency (bench/bench_transport.py), with no database and no gating; on asyncio's
   own event loop (the reference: the client as its documentation runs it), and again on
   uvloop, the loop `campaign send` runs on (engine/cli/common.py), printed after it;
3. with 50 ms added to every SMTP reply and API response: `campaign send` at
   `--slow-concurrency`, against the naive baseline (an EmailMessage and a new connection
   per message / a sequential synchronous `messages.create`, extrapolated from
   `--baseline` messages).

Every contact is sendable (opt-out regime, no opt-in wait, no quiet hours), so every
recipient costs a full send.

Besides messages/s, each row gives the CPU seconds per message of the sender: the whole
`campaign send` process (user + system, start-up included) and the bare client's
`time.process_time()` over its run. The last lines, one per channel, read

    email: campaign send 1,234/s vs bare transport 2,345/s = 0.53x (CPU per message 0.60x)

(the largest `--sizes`, same capture server, same run): on a shared machine the ratio is the
figure to read, the CPU ratio the steadier one. With two sizes or more the line adds the
marginal CPU per message, `(CPU of the largest send - CPU of the smallest) / (the difference
in messages)`: the send's fixed start-up cancels out, as the bare client's timing leaves its
own out.

`--profile N` runs one more `campaign send` of the largest size under cProfile and prints
its top N functions by cumulative time. `--code DIR` runs `campaign send` from another
checkout (`PYTHONPATH=DIR`), e.g. the code before a change, against this bench's servers and
baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.bench_transport import (
    capture_server,
    email_bytes,
    email_ceiling,
    email_naive,
    sms_ceiling,
    sms_naive,
)
from engine.cli.common import loop_factory

TENANT = """\
tenant: bench
name: Bench Motors
regime: opt_out
country: US
timezone: America/Chicago
postal_address: "1 Main St, Springfield, IL 62701, USA"
classes:
  marketing: {mode: opt_out}
  transactional: {mode: exempt}
"""

EMAIL_CAMPAIGN = """\
campaign: {code}
tenant: bench
kind: bulk
channel: email
class: marketing
template: spring_offer
subject: "{{{{ first_name or 'Hello' }}}}, your spring service offer"
sender: {{email: service@bench.example, name: Bench Service}}
"""

SMS_CAMPAIGN = """\
campaign: {code}
tenant: bench
kind: bulk
channel: sms
class: marketing
template: live_lead
sender: {{phone: "+15550001111"}}
"""


def write_contacts(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "first_name", "last_name", "email", "phone", "timezone"])
        for n in range(count):
            out.writerow([f"B{n:07d}", "Ava", "Smith", f"customer{n}@example.com", f"+1312{2000000 + n:07d}", "America/Chicago"])


def prepare(directory: Path, count: int) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
    (directory / "tenant.yaml").write_text(TENANT)
    write_contacts(directory / "contacts.csv", count)
    cli = [sys.executable, "-m", "engine"]
    for args in (["db", "init"], ["tenant", "apply", str(directory / "tenant.yaml")],
                 ["contacts", "import", str(directory / "contacts.csv"), "--tenant", "bench"]):
        subprocess.run([*cli, *args, "--db", url], check=True, stdout=subprocess.DEVNULL)
    return url


def send(url: str, directory: Path, channel: str, code: str, port: int, concurrency: int, code_dir: Path | None = None,
         profile: Path | None = None) -> dict:
    path = directory / f"{code}.yaml"
    path.write_text((EMAIL_CAMPAIGN if channel == "email" else SMS_CAMPAIGN).format(code=code))
    # No status callbacks: nothing serves them here, and the ceiling asks for none either.
    env = {**os.environ, "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{port}", "CONSENTRY_TWILIO_URL": f"http://127.0.0.1:{port}",
           "CONSENTRY_STATUS_CALLBACKS": "off"}
    if code_dir is not None:
        # `-m` puts the working directory first on sys.path, ahead of PYTHONPATH: run there.
        env["PYTHONPATH"] = str(code_dir)
    runner = ["-m", "cProfile", "-o", str(profile), "-m", "engine"] if profile else ["-m", "engine"]
    args = [sys.executable, *runner, "campaign", "send", str(path), "--db", url, "--concurrency", str(concurrency)]
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=code_dir)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"campaign send failed:\n{err.decode()}")
    summary = out.decode()
    # "... this run sent 2,000, failed 0, ..." (before the claims: "this run gated 2,000, sent 2,000, failed 0").
    sent = int(re.search(r"this run (?:gated [\d,]+, )?sent ([\d,]*\d)", summary).group(1).replace(",", ""))
    cpu = usage.ru_utime + usage.ru_stime
    return {"sent": sent, "wall_s": wall, "per_s": sent / wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_us": cpu / max(sent, 1) * 1e6}


async def timed(run) -> float:  # noqa: ANN001
    started = time.perf_counter()
    await run
    return time.perf_counter() - started


def ceiling_run(channel: str, port: int, count: int, concurrency: int,
                loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> tuple[float, float]:
    """The bare client's (seconds, CPU seconds) for `count` messages, on asyncio's own event
    loop or `loop_factory`'s."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if channel == "email":
            messages = email_bytes(count, f"ceiling{time.time_ns()}")
            cpu = time.process_time()
            seconds = runner.run(timed(email_ceiling(port, messages, concurrency)))
        else:
            cpu = time.process_time()
            seconds = runner.run(timed(sms_ceiling(port, count, concurrency)))
    return seconds, time.process_time() - cpu


def print_profile(path: Path, top: int) -> None:
    """The top functions by cumulative time, ours and the transports' libraries (the event
    loop's and the CLI's own frames, which contain everything, left out)."""
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(r"/(engine|gating|campaigns|metrics|aiosmtplib|twilio|aiohttp|jinja2)/", top)


def run(args: argparse.Namespace, workdir: Path) -> list[dict]:
    results = []
    summaries: list[str] = []
    sizes = sorted(args.sizes)
    wanted = set(sizes) if args.no_latency else {*sizes, args.latency_size}
    databases = {size: prepare(workdir / f"n{size}", size) for size in sorted(wanted)}
    for channel in args.channels:
        store = workdir / f"capture-{channel}"
        kind = "smtp" if channel == "email" else "sms"
        server = capture_server(kind, store, 0)
        count = sizes[-1]
        try:
            runs = [send(databases[size], workdir / f"n{size}", channel, f"{channel}-{size}", server.port, args.concurrency, args.code)
                    for size in sizes]
            ceiling_s, ceiling_cpu = ceiling_run(channel, server.port, count, args.concurrency)
            # `campaign send` runs on uvloop (engine/cli/common.py): the bare client on the
            # same loop too, so that the loop's share of the ratio is seen apart.
            uv_factory = loop_factory()
            uv_s, uv_cpu = ceiling_run(channel, server.port, count, args.concurrency, uv_factory) if uv_factory else (0.0, 0.0)
            if args.profile:
                profile = workdir / f"{channel}.prof"
                send(databases[count], workdir / f"n{count}", channel, f"{channel}-profiled", server.port, args.concurrency,
                     args.code, profile)
        finally:
            server.stop()
        ceiling = count / ceiling_s
        ceiling_us = ceiling_cpu / count * 1e6
        for size, result in zip(sizes, runs, strict=True):
            row = {"channel": channel, "latency_ms": 0, "recipients": size, "concurrency": args.concurrency,
                   "send_per_s": round(result["per_s"]), "peak_rss_mb": round(result["peak_rss_mb"], 1),
                   "ceiling_per_s": round(ceiling), "vs_ceiling": round(result["per_s"] / ceiling, 2),
                   "send_cpu_us": round(result["cpu_us"]), "ceiling_cpu_us": round(ceiling_us),
                   "cpu_vs_ceiling": round(ceiling_us / result["cpu_us"], 2)}
            print(json.dumps(row), flush=True)
            results.append(row)
        print(json.dumps({"channel": channel, "rss_growth": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 2)}), flush=True)
        last = runs[-1]
        marginal = ""
        if len(runs) > 1 and sizes[-1] > sizes[0]:
            # The CPU of the messages between the smallest and the largest audience: the
            # process's start-up (imports, connections: ~1.4 s) cancels out, as the bare
            # client's run leaves its own start-up out.
            first = runs[0]
            extra_us = (last["cpu_us"] * sizes[-1] - first["cpu_us"] * sizes[0]) / (sizes[-1] - sizes[0])
            marginal = f"; marginal {ceiling_us / extra_us:.2f}x, {extra_us:,.0f} vs {ceiling_us:,.0f} µs"
            print(json.dumps({"channel": channel, "marginal_cpu_us": round(extra_us), "ceiling_cpu_us": round(ceiling_us),
                              "marginal_cpu_vs_ceiling": round(ceiling_us / extra_us, 2)}), flush=True)
        on_uvloop = ""
        if uv_s:
            uv_us = uv_cpu / count * 1e6
            print(json.dumps({"channel": channel, "ceiling_uvloop_per_s": round(count / uv_s),
                              "ceiling_uvloop_cpu_us": round(uv_us)}), flush=True)
            on_uvloop = f"; bare on uvloop {count / uv_s:,.0f}/s, {uv_us:,.0f} µs"
        summaries.append(f"{channel}: campaign send {last['per_s']:,.0f}/s vs bare transport {ceiling:,.0f}/s = "
                         f"{last['per_s'] / ceiling:.2f}x (CPU per message {ceiling_us / last['cpu_us']:.2f}x{marginal}{on_uvloop})")
        if args.profile:
            print(f"--- {channel}: campaign send of {count:,} under cProfile, top {args.profile} by cumulative time", flush=True)
            print_profile(workdir / f"{channel}.prof", args.profile)
        if args.no_latency:
            continue

        server = capture_server(kind, workdir / f"capture-{channel}-slow", 50)
        try:
            slow = send(databases[args.latency_size], workdir / f"n{args.latency_size}", channel, f"{channel}-slow",
                        server.port, args.slow_concurrency, args.code)
            if channel == "email":
                naive_s = asyncio.run(timed(email_naive(server.port, args.baseline, "naive")))
            else:
                port = server.port
                naive_s = asyncio.run(timed(asyncio.to_thread(asyncio.run, sms_naive(port, args.baseline))))
        finally:
            server.stop()
        naive = args.baseline / naive_s
        row = {"channel": channel, "latency_ms": 50, "recipients": args.latency_size, "concurrency": args.slow_concurrency,
               "send_per_s": round(slow["per_s"]), "naive_per_s": round(naive, 1), "vs_naive": round(slow["per_s"] / naive, 1)}
        print(json.dumps(row), flush=True)
        results.append(row)
    for line in summaries:
        print(line, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_send", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--latency-size", type=int, default=5_000)
    parser.add_argument("--channels", nargs="+", default=["email", "sms"], choices=["email", "sms"])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slow-concurrency", type=int, default=128)
    parser.add_argument("--baseline", type=int, default=50, help="naive-baseline messages at 50 ms")
    parser.add_argument("--no-latency", action="store_true", help="skip the 50 ms runs and the naive baselines")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="also profile one send (cProfile) and print its top N functions by cumulative time")
    parser.add_argument("--code", type=Path, metavar="DIR", help="run `campaign send` from this checkout (PYTHONPATH)")
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.dir:
        run(args, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="consentry-send-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
