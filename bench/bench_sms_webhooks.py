"""Inbound SMS webhooks: classification per reply, and signed webhooks/s through `consentry serve`.

    .venv/bin/python -m bench.bench_sms_webhooks --db sqlite
    .venv/bin/python -m bench.bench_sms_webhooks --db postgres
    .venv/bin/python -m bench.bench_sms_webhooks --classify-only
    .venv/bin/python -m bench.bench_sms_webhooks --during-send --db sqlite|postgres

3. `--during-send`: status-callback latency while a campaign sends at full rate, group
   commit against the per-request transactions of before, same run (bench/callbacks_during_send.py).

1. Classification alone: engine/api/keywords.py `classify` over the 256 replies of
   tests/api/revocation_corpus.py, `--repeat` passes a round, median of `--rounds` rounds,
   µs per reply. Baseline in the same run: the exact-keyword match most senders do
   (`body.strip().upper() in {"STOP", "STOPALL", "UNSUBSCRIBE", ...}`), which misses every
   plain-language revocation.
2. Webhook throughput: a dealership of `--contacts` contacts (engine/demo/sample_data.py,
   with its ledger) imported with the real CLI, then a real `consentry serve` process on a
   free loopback port. An aiohttp client posts `--requests` Twilio inbound webhooks, each
   signed as Twilio signs it (RequestValidator over the public URL and the form), each with
   its own MessageSid, From a contact's number, Body drawn from the corpus (its mix of
   revocations and ordinary replies), `--concurrency` in flight. Signatures are computed
   before the clock starts. Baseline against the same server at the same concurrency:
   `GET /healthz` (the floor of a request that touches the database: aiohttp, a pool
   checkout and `SELECT 1`). Both in `--rounds` interleaved rounds, the median reported.
   Then every MessageSid sent is replayed once (timed too).

   Reported: requests/s, p50 / p99 latency as the client sees it, and the server's CPU per
   request (utime + stime of the serve process, from /proc).

   Checked after the run (exit 1 otherwise): the ledger grew by exactly what the classifier
   says of the bodies sent (a block per revocation, an unblock per START, an unblock and a
   grant per YES, for each contact with the sender's number), every reply is the one its
   class gets, and the replay recorded nothing.

`--profile FILE` runs the server under cProfile (slower; for finding where the time goes:
`python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

NOW = datetime.now(UTC)
TENANT = "acme-motors"
TENANT_NUMBER = "+15550001111"
PUBLIC_URL = "https://consent.acme.example"  # not where the server listens: signatures use it
SECRET = "bench-inbound-secret-0123456789abcdef"
AUTH_TOKEN = "bench-inbound-twilio-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LISTENING = re.compile(r"listening on (http://\S+?)[ ,]")
# What most senders match: the whole message, one of the standard opt-out keywords.
EXACT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})


# --- 1. classification alone -----------------------------------------------------------


def exact_keyword(body: str) -> bool:
    return body.strip().upper() in EXACT_KEYWORDS


def bench_classify(repeat: int, rounds: int) -> dict:
    from engine.api.keywords import Keyword, classify
    from tests.api.revocation_corpus import CORPUS

    bodies = [text for text, _expected in CORPUS]
    # Replies that are a whole keyword take classify's short path (a dictionary lookup);
    # everything longer is read by the rules.
    bare = [body for body in bodies if exact_keyword(body)]
    longer = [body for body in bodies if not exact_keyword(body)]
    return {
        "replies": len(bodies),
        "classify_us": _per_reply(classify, bodies, repeat, rounds),
        "exact_us": _per_reply(exact_keyword, bodies, repeat, rounds),
        "classify_longer_us": _per_reply(classify, longer, repeat, rounds),
        "classify_keywords_us": _per_reply(classify, bare, repeat * 10, rounds),
        "revocations_classify": sum(classify(body) is Keyword.OPT_OUT for body in bodies),
        "revocations_exact": len(bare),
    }


def _per_reply(function: Callable[[str], object], bodies: Sequence[str], repeat: int, rounds: int) -> list[float]:
    """[wall, CPU] µs per call, each the median of `rounds` rounds of `repeat` passes over
    `bodies` (CPU time is steadier on a shared machine: others' load does not count)."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            for body in bodies:
                function(body)
        calls = repeat * len(bodies)
        walls.append((time.perf_counter() - wall) / calls * 1e6)
        cpus.append((time.process_time() - cpu) / calls * 1e6)
    return [statistics.median(walls), statistics.median(cpus)]


# --- 2. the server and the data ---------------------------------------------------------


class Server:
    """`consentry serve --port 0` in its own process; its CPU is read from /proc."""

    def __init__(self, env: dict[str, str], log: Path, profile: Path | None, arguments: tuple[str, ...] = (),
                 port: int = 0) -> None:
        python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [*python, "-m", "engine", "serve", "--port", str(port), *arguments], env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            line = self.process.stdout.readline() if self.process.stdout else ""
            match = LISTENING.search(line)
            if match:
                self.base_url = match.group(1)
                break
            if not line or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"consentry serve did not start: {line!r}; see {log}")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def prepare(directory: Path, contacts: int, env: dict[str, str]) -> None:
    from engine.demo.sample_data import write_dealership

    data = write_dealership(directory, contacts=contacts, seed=42, now=NOW)
    for args in (
        ["db", "init"],
        ["tenant", "apply", str(data.tenant_yaml)],
        ["contacts", "import", str(data.contacts_csv), "--tenant", data.tenant],
        ["consent", "import", str(data.events_csv), "--tenant", data.tenant],
    ):
        subprocess.run([sys.executable, "-m", "engine", *args], env=env, check=True, stdout=subprocess.DEVNULL)


async def phone_numbers(url: str) -> dict[str, int]:
    """Each phone number (E.164) the tenant's contacts have, with how many have it."""
    from sqlalchemy import func, select

    from engine.db.models import ContactPoint, Tenant
    from engine.db.session import make_engine

    points = ContactPoint.__table__
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tenant_id = (await conn.execute(select(Tenant.id).where(Tenant.code == TENANT))).scalar_one()
            rows = await conn.execute(
                select(points.c.address, func.count()).where(points.c.tenant_id == tenant_id, points.c.kind == "phone")
                .group_by(points.c.address).order_by(points.c.address)
            )  # fmt: skip
            return {address: count for address, count in rows}
    finally:
        await engine.dispose()


async def ledger_counts(url: str) -> tuple[Counter[str], int]:
    """Ledger events per action, and the MessageSids noted as acted on."""
    from sqlalchemy import func, select

    from engine.db.models import ConsentEvent, InboundMessage
    from engine.db.session import make_engine

    events = ConsentEvent.__table__
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(events.c.action, func.count()).group_by(events.c.action))
            sids = (await conn.execute(select(func.count()).select_from(InboundMessage.__table__))).scalar_one()
            return Counter({action: count for action, count in rows}), sids
    finally:
        await engine.dispose()


# --- 2. the client ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    sender: str
    body: str
    sid: str
    signature: str
    form: dict[str, str]


@dataclass
class Run:
    name: str
    requests: int
    seconds: float
    server_cpu: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def inbound_requests(count: int, numbers: Sequence[str], rng: random.Random) -> list[Inbound]:
    """Twilio incoming-message webhooks, signed as Twilio signs them (over the public URL)."""
    from twilio.request_validator import RequestValidator

    from tests.api.revocation_corpus import CORPUS

    validator = RequestValidator(AUTH_TOKEN)
    url = f"{PUBLIC_URL}/webhooks/twilio/{TENANT}/inbound"
    senders = list(numbers)
    rng.shuffle(senders)
    made = []
    for n in range(count):
        sender, body, sid = senders[n % len(senders)], rng.choice(CORPUS)[0], "SM" + uuid.UUID(int=rng.getrandbits(128)).hex
        form = {
            "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
            "SmsStatus": "received", "Body": body, "FromCountry": "US", "To": TENANT_NUMBER, "NumSegments": "1",
            "MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": sender, "ApiVersion": "2010-04-01",
        }  # fmt: skip
        made.append(Inbound(sender, body, sid, validator.compute_signature(url, form), form))
    return made


async def drive(
    server: Server, name: str, count: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> Run:
    """`count` calls, `concurrency` in flight, timed; the server's CPU over the same span."""
    numbers = iter(range(count))
    latencies: list[float] = []

    async def worker() -> None:
        for n in numbers:
            started = time.perf_counter()
            await call(n)
            latencies.append(time.perf_counter() - started)

    cpu = server.cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Run(name, count, seconds, server.cpu_seconds() - cpu, latencies)


async def bench_webhooks(server: Server, url: str, args: argparse.Namespace) -> tuple[list[Run], list[str]]:
    import aiohttp

    from engine.api.keywords import Keyword, classify
    from engine.api.webhooks import REPLIES

    numbers = await phone_numbers(url)
    rng = random.Random(42)
    inbound_path = f"{server.base_url}/webhooks/twilio/{TENANT}/inbound"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    failures: list[str] = []
    runs: list[Run] = []
    sent: list[Inbound] = []
    replies: list[str] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def healthz(_n: int) -> None:
            async with session.get(f"{server.base_url}/healthz") as response:
                await response.read()
                if response.status != 200:
                    failures.append(f"/healthz answered {response.status}")

        def poster(batch: list[Inbound], answers: list[str]) -> Callable[[int], Awaitable[None]]:
            async def post(n: int) -> None:
                message = batch[n]
                async with session.post(
                    inbound_path, data=message.form, headers={"X-Twilio-Signature": message.signature}
                ) as response:
                    answers[n] = await response.text()
                    if response.status != 200:
                        failures.append(f"inbound {message.sid} answered {response.status}: {answers[n][:200]}")
            return post

        # Warm up both paths (connections, the server's first queries), not counted.
        warm = inbound_requests(args.concurrency, list(numbers), rng)
        await drive(server, "warm-up", len(warm), args.concurrency, poster(warm, [""] * len(warm)))
        await drive(server, "warm-up", 200, args.concurrency, healthz)

        before, sids_before = await ledger_counts(url)
        for _ in range(args.rounds):
            runs.append(await drive(server, "GET /healthz", args.requests, args.concurrency, healthz))
            batch = inbound_requests(args.requests, list(numbers), rng)
            answers = [""] * len(batch)
            runs.append(await drive(server, "signed inbound webhook", len(batch), args.concurrency,
                                    poster(batch, answers)))  # fmt: skip
            sent += batch
            replies += answers
        after, sids_after = await ledger_counts(url)
        replayed = [""] * len(sent)
        runs.append(await drive(server, "replay (every MessageSid again)", len(sent), args.concurrency,
                                poster(sent, replayed)))  # fmt: skip
        after_replay, sids_after_replay = await ledger_counts(url)

    # What the classifier says the ledger must have gained.
    expected: Counter[str] = Counter()
    expected_sids = 0
    mix: Counter[str] = Counter()
    for message, answer in zip(sent, replies, strict=True):
        keyword = classify(message.body)
        mix[keyword.value] += 1
        contacts = numbers[message.sender]
        if keyword is Keyword.OPT_OUT:
            expected["block"] += contacts
        elif keyword is Keyword.RESUBSCRIBE:
            expected["unblock"] += contacts
        elif keyword is Keyword.CONFIRM:
            expected["unblock"] += contacts
            expected["grant"] += contacts
        if keyword in (Keyword.OPT_OUT, Keyword.RESUBSCRIBE, Keyword.CONFIRM):
            expected_sids += 1
        reply = REPLIES[keyword]
        if (reply is None) != ("<Message>" not in answer):
            failures.append(f"{message.body!r} ({keyword.value}) was answered {answer[:200]!r}")
    for message, answer, again in zip(sent, replies, replayed, strict=True):
        if answer != again:
            failures.append(f"the replay of {message.sid} was answered {again[:200]!r}, first {answer[:200]!r}")
    gained = after - before
    checks = {
        "sent": len(sent),
        "classes sent": dict(mix),
        "ledger events expected (classifier)": dict(expected),
        "ledger events recorded": dict(gained),
        "MessageSids noted, expected / recorded": [expected_sids, sids_after - sids_before],
        "after the replay of all": {"events recorded": dict(after_replay - after),
                                    "MessageSids noted": sids_after_replay - sids_after},
    }  # fmt: skip
    print(json.dumps({"db": args.db, "checks": checks}), flush=True)
    if gained != expected:
        failures.append(f"the ledger gained {dict(gained)}, the classifier says {dict(expected)}")
    if sids_after - sids_before != expected_sids:
        failures.append(f"{sids_after - sids_before} MessageSids noted, {expected_sids} expected")
    if after_replay != after or sids_after_replay != sids_after:
        failures.append(f"the replay recorded {dict(after_replay - after)}, {sids_after_replay - sids_after} sids")
    return runs, failures


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Run], list[str]]:
    db_server = None
    try:
        if args.db == "postgres":
            from tests.servers import PostgresServer

            db_server = PostgresServer(workdir / "postgres").start()
            db_server.create_database("bench_inbound")
            url = db_server.url("bench_inbound")
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        env = {
            **os.environ, "CONSENTRY_DATABASE_URL": url, "CONSENTRY_SECRET": SECRET,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CONSENTRY_PUBLIC_URL": PUBLIC_URL,
        }  # fmt: skip
        started = time.perf_counter()
        prepare(workdir / "data", args.contacts, env)
        print(f"prepared {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s", flush=True)
        server = Server(env, workdir / "serve.log", args.profile)
        try:
            runs, failures = asyncio.run(bench_webhooks(server, url, args))
        finally:
            server.stop()
        return runs, failures
    finally:
        if db_server is not None:
            db_server.stop()


# --- the report -------------------------------------------------------------------------


def median_run(runs: list[Run], name: str) -> Run:
    chosen = [r for r in runs if r.name == name]
    return sorted(chosen, key=lambda r: r.seconds)[len(chosen) // 2]


def _us(pair: list[float]) -> str:
    return " | ".join(f"{value:.2f}" if value < 10 else f"{value:.1f}" for value in pair)


def markdown(classified: dict | None, runs: list[Run], args: argparse.Namespace, load: tuple[str, str]) -> str:
    lines = [
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.bench_sms_webhooks {' '.join(sys.argv[1:])}`",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
        f"load average before / after: {load[0]} / {load[1]}",
        "",
    ]
    if classified:
        lines += [
            f"Classification, {classified['replies']} corpus replies, median of {args.rounds} rounds of "
            f"{args.repeat} passes:",
            "",
            "| classifier | µs per reply, wall | µs per reply, CPU | revocations found in the corpus |",
            "|---|---:|---:|---:|",
            f"| `classify` (keywords.py), whole corpus | {_us(classified['classify_us'])} | "
            f"{classified['revocations_classify']} |",
            f"| `classify`, replies that are not a bare keyword | {_us(classified['classify_longer_us'])} | |",
            f"| `classify`, bare keywords (the short path) | {_us(classified['classify_keywords_us'])} | |",
            f"| baseline: `body.strip().upper() in {{STOP, ...}}` | {_us(classified['exact_us'])} | "
            f"{classified['revocations_exact']} |",
            "",
        ]
    if runs:
        base = median_run(runs, "GET /healthz")
        lines += [
            f"Webhooks, `--db {args.db}`, {args.contacts:,} contacts, {args.requests:,} requests a round, "
            f"concurrency {args.concurrency}, median of {args.rounds} interleaved rounds:",
            "",
            "| requests | requests/s | ÷ /healthz | p50 ms | p99 ms | server CPU µs/request |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in ("GET /healthz", "signed inbound webhook", "replay (every MessageSid again)"):
            result = median_run(runs, name)
            lines.append(
                f"| {name} ({result.requests:,}) | {result.rate:,.0f} | {result.rate / base.rate:.2f} | "
                f"{result.percentile(0.5):.1f} | {result.percentile(0.99):.1f} | {result.server_us:,.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def during_send(args: argparse.Namespace) -> None:
    from bench import callbacks_during_send

    load_before = Path("/proc/loadavg").read_text().split()[0]
    with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
        os.chmod(tmp, 0o755)  # the PostgreSQL server runs as another user
        rounds, failures = callbacks_during_send.run(args, args.dir or Path(tmp), Server)
    load_after = Path("/proc/loadavg").read_text().split()[0]
    print(f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.bench_sms_webhooks {' '.join(sys.argv[1:])}`")
    print(f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
          f"load average before / after: {load_before} / {load_after}\n")
    print(callbacks_during_send.markdown(rounds, args), flush=True)
    if failures:
        print(f"FAILED: {len(failures)} checks", file=sys.stderr)
        for failure in failures[:20]:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)
    print("checks: with the group commit, no callback failed and every delivery row has its final status")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sms_webhooks", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--contacts", type=int, default=10_000, help="contacts in the dealership")
    parser.add_argument("--requests", type=int, default=3_000, help="webhooks (and /healthz requests) a round")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is reported)")
    parser.add_argument("--repeat", type=int, default=200, help="passes over the corpus per classification round")
    parser.add_argument("--classify-only", action="store_true", help="only the classification figures")
    parser.add_argument("--skip-classify", action="store_true", help="only the webhook figures")
    parser.add_argument("--profile", type=Path, help="run the server under cProfile, writing this file")
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary directory")
    parser.add_argument("--during-send", action="store_true",
                        help="only the status-callback latency while a campaign sends (before vs group commit)")
    parser.add_argument("--send-contacts", type=int, default=5_000, help="texts the --during-send campaign sends")
    args = parser.parse_args()
    if args.during_send:
        during_send(args)
        return
    if args.profile:
        args.profile = args.profile.resolve()
    load_before = Path("/proc/loadavg").read_text().split()[0]
    classified = None if args.skip_classify else bench_classify(args.repeat, args.rounds)
    if classified:
        print(json.dumps({"classification": classified}), flush=True)
    runs: list[Run] = []
    failures: list[str] = []
    if not args.classify_only:
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
            runs, failures = run(args, args.dir)
        else:
            with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
                os.chmod(tmp, 0o755)  # the PostgreSQL server runs as another user
                runs, failures = run(args, Path(tmp))
    load_after = Path("/proc/loadavg").read_text().split()[0]
    print(markdown(classified, runs, args, (load_before, load_after)), flush=True)
    if failures:
        print(f"FAILED: {len(failures)} checks", file=sys.stderr)
        for failure in failures[:20]:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)
    if runs:
        print("checks: the ledger gained what the classifier says, the replay recorded nothing")


if __name__ == "__main__":
    main()
