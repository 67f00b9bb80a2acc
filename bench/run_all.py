"""`make bench`: every benchmark, one after the other, each printing its own figures.

    .venv/bin/python -m bench.run_all            # the full sizes of docs/benchmarks.md
    .venv/bin/python -m bench.run_all --quick    # small sizes: a smoke run in a few minutes

Each benchmark runs in its own process (peak RSS is its own) and measures its baseline in
the same run, so ratios stay meaningful on a shared, noisy machine. The figures and how to
read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

FULL = [
    ["bench.bench_gating"],
    ["bench.bench_render"],
    # Both databases in one run: PostgreSQL's figures next to SQLite's (docs/benchmarks.md).
    ["bench.bench_import", "--rows", "1000000", "--db", "both"],
    ["bench.bench_check", "--contacts", "100000", "1000000", "--db", "both"],
    ["bench.bench_transport"],
    ["bench.bench_dkim", "--count", "600"],
    ["bench.bench_send", "--sizes", "10000", "100000", "--latency-size", "10000"],
    ["bench.bench_relay", "--recipients", "500", "--repeat", "3"],
    ["bench.bench_relay", "--recipients", "2000", "--repeat", "2"],
    ["bench.bench_inbound"],
    ["bench.bench_sms_webhooks", "--db", "sqlite"],
    ["bench.bench_sms_webhooks", "--db", "postgres", "--skip-classify"],
    ["bench.bench_sms_webhooks", "--during-send", "--db", "sqlite"],
    ["bench.bench_sms_webhooks", "--during-send", "--db", "postgres"],
    ["bench.bench_webhooks_out", "--events", "20000", "--import-rows", "100000", "--repeat", "3"],
    ["bench.bench_contacts_api", "--db", "postgres"],
    ["bench.bench_desk_contacts"],
    ["bench.bench_workers"],
    ["bench.bench_desk_campaign", "--recipients", "1000000", "--requests", "50"],
]
QUICK = [
    ["bench.bench_gating", "--recipients", "100000", "--repeat", "1"],
    ["bench.bench_render", "--count", "10000", "--sms-count", "10000", "--dkim-count", "20"],
    ["bench.bench_import", "--rows", "20000", "--db", "sqlite"],
    ["bench.bench_check", "--contacts", "10000", "50000", "--db", "sqlite"],
    ["bench.bench_dkim", "--count", "100"],
    ["bench.bench_send", "--sizes", "2000", "5000", "--latency-size", "2000", "--baseline", "20"],
    ["bench.bench_inbound", "--count", "500", "--connections", "4"],
    ["bench.bench_sms_webhooks", "--contacts", "2000", "--requests", "500", "--rounds", "1", "--repeat", "20"],
    ["bench.bench_sms_webhooks", "--during-send", "--send-contacts", "1000", "--rounds", "1"],
    ["bench.bench_webhooks_out", "--events", "2000", "--import-rows", "5000", "--repeat", "1"],
    ["bench.bench_contacts_api", "--db", "sqlite", "--contacts", "2000", "--seconds", "2", "--concurrency", "16"],
    ["bench.bench_desk_contacts", "--contacts", "20000", "--requests", "10"],
    ["bench.bench_workers", "--recipients", "2000"],
    ["bench.bench_desk_campaign", "--recipients", "20000", "--campaigns", "5", "--requests", "10"],
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="run only the benchmarks whose module contains this text")
    args = parser.parse_args()
    failures = 0
    for command in QUICK if args.quick else FULL:
        if args.only and args.only not in command[0]:
            continue
        print(f"\n=== python -m {' '.join(command)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", *command])
        print(f"=== exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
