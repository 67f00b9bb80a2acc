"""Transport throughput against the capture servers on loopback, and naive baselines.

    python -m bench.bench_transport [--email N] [--sms N] [--slow-baseline N]
                                    [--latencies 0,50] [--connections 16] [--concurrency 16]
                                    [--wide-connections 64]
                                    [--repeat 3] [--out docs/benchmarks-transport.md]

Every server runs in its own process (`consentry capture smtp|sms --latency-ms L`, or the
reference sinks below), so its CPU is not charged to the client; with two cores, client
and server each get one. For each server latency (0 and 50 ms):

Email, the same pre-rendered ~3 KB multipart message bytes (text + HTML):

- ceiling: bare aiosmtplib, `--connections` reused connections, `sendmail(bytes)` in a loop;
- SmtpPool: the product transport (`engine.transports.SmtpPool`, size = `--connections`,
  and with latency also `--wide-connections`: a session carries one message per four
  round trips, so with latency the pool size sets the rate);
- baseline: an `EmailMessage` built per message and sent with `aiosmtplib.send` (a new
  connection per message), one at a time: the obvious script.

SMS:

- ceiling: the official client's `messages.create_async` (AsyncTwilioHttpClient),
  `--concurrency` requests in flight;
- TwilioSms: the product transport at the same concurrency;
- baseline: the synchronous `client.messages.create`, one at a time.

With 50 ms of latency the baselines send `--slow-baseline` messages and the rate is
extrapolated (each message costs the same round trips). Also, for the same client (the email
ceiling, 0 ms): our SMTP capture server against a plain aiosmtpd sink (its handler stores
nothing) and a bare asyncio sink (answers without parsing: the floor).

Reported: messages/s, client CPU and server CPU per message (from /proc, so it is the
server process only). The machine is shared and noisy: read the ratios of one run, and the
medians of `--repeat` runs for the 0 ms figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import aiosmtplib

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-token"
SENDER = "service@acme.example"
SMS_FROM = "+15550001000"
SMS_BODY = "Hi {n}, your Acme service offer: 20% off brakes until Sunday. Reply STOP to opt out."
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- servers in their own processes -----------------------------------------------------


class ServerProcess:
    """A server started with `args`; its first stdout line names the port."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"{name} did not start: {line!r}")
        self.port = int(line.split("listening on ")[1].split(",")[0].rstrip("/").rsplit(":", 1)[1])

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def capture_server(kind: str, store: Path, latency_ms: float) -> ServerProcess:
    code = "from engine.cli.capture import capture; capture(prog_name='consentry capture')"
    return ServerProcess(f"capture {kind}", [
        sys.executable, "-c", code, kind, "--port", "0", "--store", str(store),
        "--latency-ms", str(latency_ms),
    ])


def reference_sink(kind: str) -> ServerProcess:
    return ServerProcess(kind, [sys.executable, "-m", "bench.bench_transport", "--serve", kind])


def _serve_reference(kind: str) -> None:
    """The reference SMTP sinks (run in a child process)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "aiosmtpd":
            from aiosmtpd.smtp import SMTP

            class Discard:
                async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
                    return "250 2.0.0 Ok"

            handler = Discard()
            server = await loop.create_server(lambda: SMTP(handler, hostname="aiosmtpd"), "127.0.0.1", 0)
        else:
            server = await loop.create_server(_BareSink, "127.0.0.1", 0)
        print(f"{kind} listening on smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class _BareSink(asyncio.Protocol):
    """Answers every SMTP command without looking at it: no parsing, no storing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""
        self.in_data = False
        transport.write(b"220 bare sink\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buffer, self.in_data = self.buffer[end + 5:], False
                out.append(b"250 2.0.0 Ok\r\n")
                continue
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            verb, self.buffer = self.buffer[:4].upper(), self.buffer[end + 1:]
            if verb == b"EHLO":
                # The same extensions as ours, so the client does the same work (SIZE makes
                # aiosmtplib measure every message).
                out.append(b"250-bare\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                           b"250 SIZE 26214400\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 go on\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
            else:
                out.append(b"250 Ok\r\n")
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


# --- what is measured -------------------------------------------------------------------


@dataclass
class Result:
    group: str
    name: str
    latency_ms: float
    count: int
    concurrency: int
    seconds: float
    client_cpu: float
    server_cpu: float
    extrapolated: bool = False

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def client_us(self) -> float:
        return self.client_cpu / self.count * 1e6

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.count * 1e6


async def measure(server: ServerProcess, run: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    server_before, cpu_before, started = server.cpu_seconds(), time.process_time(), time.perf_counter()
    await run()
    seconds = time.perf_counter() - started
    # /proc counts in clock ticks (10 ms): over a multi-second run that is well under 1 %.
    return seconds, time.process_time() - cpu_before, server.cpu_seconds() - server_before


def email_bytes(count: int, run_id: str) -> list[bytes]:
    """Pre-rendered messages, as the render stage hands them to the transport."""
    template = _email_message("{N}", run_id).as_bytes(policy=SMTP_POLICY)
    return [template.replace(b"{N}", str(n).encode()) for n in range(count)]


def _email_message(number: str, run_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Acme Service <{SENDER}>"
    message["To"] = f"customer{number}@example.com"
    message["Subject"] = "Your spring service offer"
    message["Message-ID"] = f"<{run_id}.{number}@acme.example>"  # unique: no dedupe shortcut
    message["List-Unsubscribe"] = "<https://links.acme.example/u/abcdef0123456789>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = "Hi there,\n\n" + "Spring is here: 20% off brakes and a free check-up this month. " * 12 + "\n"
    message.set_content(text)
    message.add_alternative("<html><body><p>Hi there,</p>" + "<p>Spring is here: 20% off brakes.</p>" * 25
                            + "</body></html>", subtype="html")
    return message


async def email_ceiling(port: int, messages: list[bytes], connections: int) -> None:
    numbers = iter(range(len(messages)))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench", timeout=120)
        await client.connect()
        for n in numbers:
            await client.sendmail(SENDER, [f"customer{n}@example.com"], messages[n])
        await client.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def email_pool(port: int, messages: list[bytes], connections: int) -> None:
    from engine.transports import SmtpPool

    pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=connections, timeout=120, local_hostname="bench")
    numbers = iter(range(len(messages)))

    async def worker() -> None:
        for n in numbers:
            await pool.send_raw(SENDER, [f"customer{n}@example.com"], messages[n])

    await asyncio.gather(*(worker() for _ in range(connections)))
    await pool.close()


async def email_naive(port: int, count: int, run_id: str) -> None:
    for n in range(count):
        message = _email_message(str(n), run_id)  # built per message, as a script would
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port, local_hostname="bench", timeout=120)


async def sms_ceiling(port: int, count: int, concurrency: int) -> None:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http, environment={"TWILIO_ACCOUNT_SID": ACCOUNT_SID})
    client.api.base_url = f"http://127.0.0.1:{port}"
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await client.messages.create_async(to=f"+1555{2000000 + n:07d}", from_=SMS_FROM, body=SMS_BODY.format(n=n))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await http.close()


async def sms_transport(port: int, count: int, concurrency: int) -> None:
    from engine.transports import TwilioSms

    transport = TwilioSms(f"http://127.0.0.1:{port}", ACCOUNT_SID, AUTH_TOKEN, concurrency=concurrency, timeout=120)
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await transport.send(f"+1555{2000000 + n:07d}", SMS_FROM, SMS_BODY.format(n=n))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await transport.close()


async def sms_naive(port: int, count: int) -> None:
    from twilio.rest import Client

    def send_all() -> None:
        client = Client(ACCOUNT_SID, AUTH_TOKEN, environment={"TWILIO_ACCOUNT_SID": ACCOUNT_SID})
        client.api.base_url = f"http://127.0.0.1:{port}"
        for n in range(count):
            client.messages.create(to=f"+1555{2000000 + n:07d}", from_=SMS_FROM, body=SMS_BODY.format(n=n))

    send_all()  # synchronous on purpose: this is the baseline


# --- the run ----------------------------------------------------------------------------


Setup = Callable[[], Callable[[], Awaitable[None]]]


async def run_all(args: argparse.Namespace, store: Path) -> list[Result]:
    results: list[Result] = []
    run_ids = (f"r{n}" for n in itertools.count())

    async def record(group: str, name: str, server: ServerProcess, latency: float, count: int,
                     concurrency: int, setup: Setup, repeat: int = 1, extrapolated: bool = False) -> None:
        samples = []
        for _ in range(repeat):
            run = setup()  # preparing the messages is not timed
            seconds, client_cpu, server_cpu = await measure(server, run)
            samples.append(Result(group, name, latency, count, concurrency, seconds, client_cpu, server_cpu,
                                  extrapolated))
        middle = sorted(samples, key=lambda result: result.seconds)[len(samples) // 2]  # the median
        results.append(middle)
        print(f"  {group:<6} {name:<40} {latency:>3.0f} ms  {middle.rate:>8,.0f} msgs/s  "
              f"client {middle.client_us:>5,.0f} µs/msg  server {middle.server_us:>5,.0f} µs/msg"
              + ("  (extrapolated)" if extrapolated else ""), flush=True)

    def with_messages(send: Callable[[int, list[bytes], int], Awaitable[None]], port: int) -> Setup:
        def setup() -> Callable[[], Awaitable[None]]:
            messages = email_bytes(args.email, next(run_ids))
            return lambda: send(port, messages, args.connections)
        return setup

    async def at_latency(latency: float) -> None:
        repeat = args.repeat if latency == 0 else 1
        slow = latency > 0
        connections, concurrency = args.connections, args.concurrency
        naive_email = args.slow_baseline if slow else args.email_baseline
        naive_sms = args.slow_baseline if slow else args.sms_baseline
        print(f"server latency {latency:g} ms", flush=True)
        smtp = capture_server("smtp", store / f"smtp-{latency:g}", latency)
        sms = capture_server("sms", store / f"sms-{latency:g}", latency)
        try:
            await record("email", f"ceiling: aiosmtplib, {connections} connections", smtp, latency, args.email,
                         connections, with_messages(email_ceiling, smtp.port), repeat)
            await record("email", f"SmtpPool(size={connections})", smtp, latency, args.email, connections,
                         with_messages(email_pool, smtp.port), repeat)
            if slow and args.wide_connections > connections:
                # With latency a session carries 1 / (4 x latency) messages/s: size is the lever.
                wide = args.wide_connections
                await record("email", f"SmtpPool(size={wide})", smtp, latency, args.email, wide,
                             with_messages(lambda port, messages, _: email_pool(port, messages, wide), smtp.port))
            await record("email", "baseline: EmailMessage + connection each", smtp, latency, naive_email, 1,
                         lambda: lambda: email_naive(smtp.port, naive_email, next(run_ids)), repeat, slow)
            await record("sms", f"ceiling: create_async, concurrency {concurrency}", sms, latency, args.sms,
                         concurrency, lambda: lambda: sms_ceiling(sms.port, args.sms, concurrency), repeat)
            await record("sms", f"TwilioSms(concurrency={concurrency})", sms, latency, args.sms, concurrency,
                         lambda: lambda: sms_transport(sms.port, args.sms, concurrency), repeat)
            await record("sms", "baseline: sync create, one at a time", sms, latency, naive_sms, 1,
                         lambda: lambda: sms_naive(sms.port, naive_sms), repeat, slow)
        finally:
            smtp.stop()
            sms.stop()

    async def compare_servers() -> None:
        print("SMTP servers, same client (the aiosmtplib ceiling, 0 ms)", flush=True)
        for label, start in (
            ("our capture server (parses, stores)", lambda: capture_server("smtp", store / "smtp-compare", 0)),
            ("aiosmtpd sink (stores nothing)", lambda: reference_sink("aiosmtpd")),
            ("bare asyncio sink (no parsing)", lambda: reference_sink("bare")),
        ):
            server = start()
            try:
                await record("server", label, server, 0, args.email, args.connections,
                             with_messages(email_ceiling, server.port), args.repeat)
            finally:
                server.stop()

    for latency in args.latencies:
        await at_latency(latency)
    if 0 in args.latencies:
        await compare_servers()
    return results


def markdown(results: list[Result], args: argparse.Namespace, command: str) -> str:
    def find(group: str, prefix: str, latency: float) -> Result | None:
        return next((r for r in results if r.group == group and r.name.startswith(prefix)
                     and r.latency_ms == latency), None)

    lines = [
        "# Transport benchmark",
        "",
        "Produced by `bench/bench_transport.py` (its docstring says exactly what each row does).",
        "",
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{command}`",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
        "shared and noisy, so compare the ratios within one run rather than absolute figures across runs",
        f"- messages: {args.email:,} emails (~{len(email_bytes(1, 'x')[0]):,} bytes, text + HTML) and "
        f"{args.sms:,} texts per ceiling / transport row; baselines {args.email_baseline:,} emails and "
        f"{args.sms_baseline:,} texts at 0 ms, {args.slow_baseline:,} of each at 50 ms (rate extrapolated)",
        f"- concurrency: {args.connections} SMTP connections (plus a {args.wide_connections}-connection "
        f"SmtpPool row when the server has latency), {args.concurrency} Twilio requests in flight; "
        "baselines one at a time",
        f"- 0 ms rows are the median of {args.repeat} runs; servers run in their own processes "
        "(`consentry capture smtp|sms --latency-ms L`), server CPU is read from /proc",
        "",
    ]
    for latency in args.latencies:
        lines += [f"## Server latency {latency:g} ms", "",
                  "| channel | client | msgs/s | vs baseline | client CPU µs/msg | server CPU µs/msg |",
                  "|---|---|---:|---:|---:|---:|"]
        for group in ("email", "sms"):
            baseline = find(group, "baseline", latency)
            for result in (r for r in results if r.group == group and r.latency_ms == latency):
                ratio = f"{result.rate / baseline.rate:,.1f}×" if baseline else ""
                note = " (extrapolated)" if result.extrapolated else ""
                lines.append(f"| {group} | {result.name}{note} | {result.rate:,.0f} | {ratio} | "
                             f"{result.client_us:,.0f} | {result.server_us:,.0f} |")
        lines.append("")
    servers = [r for r in results if r.group == "server"]
    if servers:
        ours = servers[0]
        lines += ["## SMTP servers, same client", "",
                  f"The email ceiling client ({args.connections} reused aiosmtplib connections, 0 ms) against "
                  "each server in its own process. The client is the limit here, so msgs/s mostly shows how "
                  "busy the machine was during each run; the server CPU column is the comparison.", "",
                  "| server | msgs/s | server CPU µs/msg | server CPU vs ours |", "|---|---:|---:|---:|"]
        for result in servers:
            lines.append(f"| {result.name} | {result.rate:,.0f} | {result.server_us:,.0f} | "
                         f"{result.server_us / ours.server_us:,.2f}× |")
        lines.append("")
    lines += [
        "## Reading the figures",
        "",
        "- Every row is client-bound at 0 ms: aiosmtplib spends a few hundred µs of CPU per message "
        "and the twilio client more, so the client core is the limit, not our servers. The server CPU "
        "column says how much headroom a server has.",
        "- An SMTP session carries one message per four round trips (MAIL, RCPT, DATA, the data: "
        "aiosmtplib does not pipeline), so with a relay `L` ms away one connection sends at most "
        "1000 / (4 L) messages/s. With latency, the pool size, not CPU, sets the email rate; the "
        "naive baseline adds the greeting, EHLO and QUIT of a new connection to every message.",
        "- Twilio requests are one round trip each, so with latency the SMS rate is about "
        "concurrency / (latency + service time) until the client CPU saturates.",
        "- Baselines at 50 ms send few messages and extrapolate: each message costs the same "
        "round trips, so the rate does not depend on the count. Their server CPU is measured over "
        "few messages in 10 ms clock ticks: read it as rough.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["aiosmtpd", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--email", type=int, default=10_000, help="emails per ceiling / transport run")
    parser.add_argument("--sms", type=int, default=10_000, help="texts per ceiling / transport run")
    parser.add_argument("--email-baseline", type=int, default=2_000, help="emails for the 0 ms baseline")
    parser.add_argument("--sms-baseline", type=int, default=2_000, help="texts for the 0 ms baseline")
    parser.add_argument("--slow-baseline", type=int, default=100, help="messages per baseline at 50 ms")
    parser.add_argument("--latencies", type=lambda text: [float(v) for v in text.split(",")], default=[0.0, 50.0])
    parser.add_argument("--connections", type=int, default=16, help="SMTP connections")
    parser.add_argument("--wide-connections", type=int, default=64,
                        help="a second, larger SmtpPool row when the server has latency")
    parser.add_argument("--concurrency", type=int, default=16, help="Twilio requests in flight")
    parser.add_argument("--repeat", type=int, default=3, help="runs per 0 ms row (the median is kept)")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    if args.serve:
        _serve_reference(args.serve)
        return
    command = "python -m bench.bench_transport " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as directory:
        results = asyncio.run(run_all(args, Path(directory)))
    report = markdown(results, args, command.strip())
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(report)


if __name__ == "__main__":
    main()
