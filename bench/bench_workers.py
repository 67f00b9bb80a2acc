"""Benchmark of the arq backend: 1, 2 and 4 `consentry worker` processes on PostgreSQL and
Redis, against the inline backend on SQLite, to the capture servers, in one run.

    .venv/bin/python -m bench.bench_workers                     # 10,000 recipients a run
    .venv/bin/python -m bench.bench_workers --recipients 2000   # a quick look

For each channel (email, SMS) and each configuration, a fresh database holding the same
`--recipients` contacts (every one sendable) gets one campaign:

- `inline, SQLite`: one `campaign send` process (the embedded default), as the reference;
- `arq, PostgreSQL, W workers`: W `consentry worker` processes (started and idle first),
  then `campaign send --backend arq`, which enqueues one job per batch and waits.

Throughput is measured where the messages arrive: the capture server's own receive stamps,
first to last message (process start-up is the same for every row and left out). CPU is the
CPU seconds of our processes during the send (the workers and the enqueuing `campaign send`;
for inline, the one process) per 1,000 messages; the capture server's and PostgreSQL's are
reported apart, and "cores busy" is messages/s times all three: on a shared host the
throughput follows the cores the send was given, so read the CPU columns first. The capture servers run in their own processes, one per channel.

The last line reads `workers: 2 vs 1 = R.RRx`: email, PostgreSQL, two workers over one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.bench_send import EMAIL_CAMPAIGN, SMS_CAMPAIGN, TENANT, write_contacts
from bench.bench_transport import CLOCK_TICKS, capture_server
from bench.proc_cpu import postgres_cpu_seconds

CLI = [sys.executable, "-m", "engine"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Capture:
    """A capture server in its own process, and where it stores what it accepts."""

    kind: str
    store: Path

    def __post_init__(self) -> None:
        self.server = capture_server(self.kind, self.store, 0)

    @property
    def env(self) -> dict[str, str]:
        port = self.server.port
        return {"CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{port}", "CONSENTRY_TWILIO_URL": f"http://127.0.0.1:{port}"}

    def lines(self) -> int:
        path = self.store / "messages.jsonl"
        return sum(1 for _ in path.open()) if path.exists() else 0

    def stamps_after(self, skip: int) -> list[float]:
        with (self.store / "messages.jsonl").open() as handle:
            rows = [json.loads(line) for n, line in enumerate(handle) if n >= skip]
        return sorted(datetime.fromisoformat(row["received_at"].replace("Z", "+00:00")).timestamp() for row in rows)


def sent_count(output: str) -> int:
    match = re.search(r"this run sent ([\d,]*\d)", output)
    if not match:
        raise SystemExit(f"campaign send printed no summary:\n{output}")
    return int(match[1].replace(",", ""))


def setup_database(url: str, directory: Path) -> None:
    for args in (["db", "init"], ["tenant", "apply", str(directory / "tenant.yaml")],
                 ["contacts", "import", str(directory / "contacts.csv"), "--tenant", "bench"]):
        subprocess.run([*CLI, *args, "--db", url], check=True, stdout=subprocess.DEVNULL)


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(count):
        log = (logs / f"worker-{n}.log").open("wb")
        workers.append(subprocess.Popen([*CLI, "worker", "--metrics-port", "0"], env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 120
    for n, _worker in enumerate(workers):
        # A worker prints its metrics address just before it starts polling the queue.
        while "metrics on" not in (logs / f"worker-{n}.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {n} did not start:\n{(logs / f'worker-{n}.log').read_text()}")
            time.sleep(0.1)
    return workers


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(label: str, channel: str, campaign: Path, env: dict[str, str], capture: Capture, workers: list[subprocess.Popen],
            backend: str, postgres_dir: Path | None) -> dict:
    skip = capture.lines()
    ours_before = sum(cpu_seconds(w.pid) for w in workers)
    sink_before = capture.server.cpu_seconds()
    db_before = postgres_cpu_seconds(postgres_dir) if postgres_dir else 0.0
    process = subprocess.Popen([*CLI, "campaign", "send", str(campaign), "--backend", backend], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode() if process.stdout else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label}: campaign send failed:\n{output}")
    ours = usage.ru_utime + usage.ru_stime + sum(cpu_seconds(w.pid) for w in workers) - ours_before
    sink = capture.server.cpu_seconds() - sink_before
    db = postgres_cpu_seconds(postgres_dir) - db_before if postgres_dir else 0.0
    sent = sent_count(output)
    stamps = capture.stamps_after(skip)
    if len(stamps) != sent:
        raise SystemExit(f"{label}: the sink got {len(stamps)} messages for {sent} sent")
    per_s = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"channel": channel, "run": label, "sent": sent, "per_s": per_s, "cpu_per_1k": 1000 * ours / sent,
            "sink_cpu_per_1k": 1000 * sink / sent, "db_cpu_per_1k": 1000 * db / sent}


def run(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from tests.servers import PostgresServer, RedisServer

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tenant.yaml").write_text(TENANT)
    write_contacts(workdir / "contacts.csv", args.recipients)
    postgres = PostgresServer(workdir / "postgres").start()
    redis = RedisServer(workdir / "redis").start()
    results: list[dict] = []
    try:
        template = postgres.create_database("bench_template")
        setup_database(template, workdir)
        for channel in args.channels:
            runs: list[tuple[str, int]] = [("inline, SQLite", 0)] + [(f"arq, PostgreSQL, {w} worker{'s' * (w > 1)}", w)
                                                                     for w in args.workers]
            for label, count in runs:
                # A sink per run: the SMTP capture drops a Message-ID it has seen, and every
                # run's first campaign has the same ids.
                capture = Capture("smtp" if channel == "email" else "sms", workdir / f"capture-{channel}-{count}")
                try:
                    base = {**os.environ, **capture.env, "CONSENTRY_STATUS_CALLBACKS": "off", "CONSENTRY_REDIS_URL": redis.url()}
                    code = f"{channel}-{count}"
                    campaign = workdir / f"{code}.yaml"
                    campaign.write_text((EMAIL_CAMPAIGN if channel == "email" else SMS_CAMPAIGN).format(code=code))
                    if count == 0:
                        url = f"sqlite+aiosqlite:///{workdir / f'{code}.db'}"
                        setup_database(url, workdir)
                        env = {**base, "CONSENTRY_DATABASE_URL": url}
                        result = measure(label, channel, campaign, env, capture, [], "inline", None)
                    else:
                        redis.flushall()
                        url = postgres.create_database(f"bench_{channel}_{count}", template="bench_template")
                        env = {**base, "CONSENTRY_DATABASE_URL": url}
                        logs = workdir / f"logs-{code}"
                        logs.mkdir(exist_ok=True)
                        workers = start_workers(count, env, logs)
                        try:
                            result = measure(label, channel, campaign, env, capture, workers, "arq", postgres.data_dir)
                        finally:
                            stop(workers)
                finally:
                    capture.server.stop()
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
                results.append(result)
    finally:
        redis.stop()
        postgres.stop()
    return results


def cores_busy(result: dict) -> float:
    """Cores the whole send kept busy (ours, the sink's, PostgreSQL's): on a shared host,
    what it was given; the messages/s column follows it."""
    return result["per_s"] * (result["cpu_per_1k"] + result["sink_cpu_per_1k"] + result["db_cpu_per_1k"]) / 1000


def table(results: list[dict]) -> str:
    lines = ["| channel | run | messages | messages/s | vs 1 worker | our CPU s / 1,000 | sink CPU s / 1,000 | PostgreSQL CPU s / 1,000 "
             "| cores busy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        one = next((r for r in results if r["channel"] == result["channel"] and r["run"].endswith(", 1 worker")), None)
        ratio = f"{result['per_s'] / one['per_s']:.2f}x" if one and "arq" in result["run"] else "—"
        database = f"{result['db_cpu_per_1k']:.2f}" if "arq" in result["run"] else "(in process)"
        lines.append(f"| {result['channel']} | {result['run']} | {result['sent']:,} | {result['per_s']:,.0f} | {ratio} | "
                     f"{result['cpu_per_1k']:.2f} | {result['sink_cpu_per_1k']:.2f} | {database} | {cores_busy(result):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_workers", description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--channels", nargs="+", default=["email", "sms"], choices=["email", "sms"])
    parser.add_argument("--dir", type=Path, help="keep databases, logs and captures here")
    args = parser.parse_args()
    if 1 not in args.workers or 2 not in args.workers or "email" not in args.channels:
        parser.error("the last line compares 2 workers with 1 on email: keep 1 and 2 in --workers and email in --channels")
    if args.dir:
        results = run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="consentry-workers-") as tmp:
            results = run(args, Path(tmp))
    print(table(results))
    email = {r["run"]: r["per_s"] for r in results if r["channel"] == "email"}
    print(f"workers: 2 vs 1 = {email['arq, PostgreSQL, 2 workers'] / email['arq, PostgreSQL, 1 worker']:.2f}x")


if __name__ == "__main__":
    main()
