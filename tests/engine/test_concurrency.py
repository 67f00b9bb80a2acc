"""Many runners on one campaign, workers killed mid-batch, frequency caps under concurrency.

Everything is real: `consentry` processes (arq workers, `campaign send`, `campaign resume`),
a redis-server, PostgreSQL (and SQLite for the caps), and the SMS capture server, which keeps
every text it accepts (no de-duplication: a number texted twice shows up twice). So "each
recipient once" is counted where a recipient would count it, and compared with the ledger.

Every runner gates at its own now (no `--at`), on a dealership dated relative to now whose
quiet hours are switched off, so what goes out does not depend on the time of day of the run.
Campaigns are paced with their `rate` (per inline runner; shared by all arq workers) and the
capture's latency, so that the runners really overlap; the tests check that they did (more
than one runner sent).

Races that timing alone would hit only now and then are made certain by holding a
PostgreSQL table lock at the right moment (`table_locked`).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis
from sqlalchemy import text

from engine.db.session import make_engine
from tests.cli import consentry, ok
from tests.servers import _parent_death_signal

TTL_S = 3.0  # the capture fixture's CONSENTRY_CLAIM_TTL_S
CODE = "live-lead-followup"  # the sample dealership's SMS campaign
QUIET_HOURS = 'quiet_hours: {start: "21:00", end: "08:00"}'
CAP = "frequency_caps: [{channel: sms, max: 3, per_hours: 24}]"
OPT_IN = "opt_in_required: true"


# --- helpers ----------------------------------------------------------------------------


def query(db: str, statement: str, **params) -> list[tuple]:  # noqa: ANN003
    async def run() -> list[tuple]:
        engine = make_engine(db)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(statement), params)).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def dealership(tmp_path: Path, db: str, contacts: int, seed: int, rate: int, *, cap_one: bool = False):  # noqa: ANN201
    """The sample dealership, dated relative to now, imported into `db`."""
    from engine.demo.sample_data import write_dealership

    data = write_dealership(tmp_path / "d", contacts=contacts, seed=seed, rate=rate, now=datetime.now(UTC))
    policy = data.tenant_yaml.read_text()
    edits = {QUIET_HOURS: "quiet_hours: null"}
    if cap_one:
        # One text a day, and nobody awaiting opt-in: every text is a capped campaign text.
        edits |= {CAP: "frequency_caps: [{channel: sms, max: 1, per_hours: 24}]", OPT_IN: "opt_in_required: false"}
    for old, new in edits.items():
        assert old in policy, f"the sample tenant policy changed: {old!r} not found"
        policy = policy.replace(old, new)
    data.tenant_yaml.write_text(policy)
    ok("db", "init", "--db", db)
    ok("tenant", "apply", data.tenant_yaml, "--db", db)
    ok("contacts", "import", data.contacts_csv, "--tenant", data.tenant, "--db", db)
    ok("consent", "import", data.events_csv, "--tenant", data.tenant, "--db", db)
    return data


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, deadline: float) -> int:
        """The exit status, or fail (with the log) if it has not exited by `deadline`."""
        try:
            return self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running at its deadline:\n{self.output()[-3000:]}") from None

    def succeeded(self, deadline: float) -> str:
        code = self.wait(deadline)
        assert code == 0, f"{self.name} exited {code}:\n{self.output()[-3000:]}"
        return self.output()

    def sent(self) -> int:
        """What `campaign send|resume` says this run sent."""
        match = re.search(r"this run sent ([\d,]+)", self.output())
        assert match, f"{self.name} printed no summary:\n{self.output()[-3000:]}"
        return int(match[1].replace(",", ""))


class Processes:
    """`consentry` subprocesses of one test; whatever is still running at the end is killed."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[Process] = []
        directory.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: object) -> Process:
        log = self.directory / f"{name}.log"
        with open(log, "wb") as handle:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                [sys.executable, "-m", "engine", *map(str, args)], env=self.env, stdin=subprocess.DEVNULL,
                stdout=handle, stderr=subprocess.STDOUT, preexec_fn=_parent_death_signal(),
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.popen.poll() is None:
                process.popen.kill()
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def runner_env(db: str, capture, redis_url: str | None = None) -> dict[str, str]:  # noqa: ANN001
    env = {
        **os.environ, **capture.env,
        "CONSENTRY_DATABASE_URL": db,
        "CONSENTRY_CLAIM_TTL_S": str(TTL_S),
        # Nothing serves the status-callback URL here; the capture would post to it for nothing.
        "CONSENTRY_STATUS_CALLBACKS": "off",
    }
    if redis_url:
        env["CONSENTRY_REDIS_URL"] = redis_url
    return env


def wait_until(condition, deadline: float, what: str, interval: float = 0.05):  # noqa: ANN001, ANN201
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
    return value


def connected_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to 127.0.0.1:`port` (Linux).

    The SMS transport keeps its connections to the provider open for the length of a batch,
    so for a worker this means: it is sending a batch right now.
    """
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and remote == f"0100007F:{port:04X}":
                return True
    return False


@contextlib.contextmanager
def table_locked(db: str, table: str, mode: str = "ACCESS EXCLUSIVE"):  # noqa: ANN201
    """Hold a lock on a PostgreSQL table for the length of the block."""
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def hold() -> None:
        connection = await asyncpg.connect(db.replace("+asyncpg", ""), timeout=30)
        try:
            async with connection.transaction():
                await connection.execute(f"LOCK TABLE {table} IN {mode} MODE")
                locked.set()
                await asyncio.to_thread(release.wait, 120)
        finally:
            await connection.close()

    def target() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)
            locked.set()

    thread = threading.Thread(target=target, name="table-lock", daemon=True)
    thread.start()
    assert locked.wait(30) and not failures, failures
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def assert_each_recipient_once(db: str, server) -> Counter:  # noqa: ANN001
    """Every number texted exactly once, the ledger's sent rows are exactly what the
    provider accepted (number and message SID), and no row is left pending or sending."""
    texts = server.messages
    received = Counter(message["to"] for message in texts)
    twice = {number: n for number, n in received.items() if n > 1}
    assert twice == {}, f"{len(twice)} numbers got more than one text: {sorted(twice.items())[:10]}"
    sent = query(db, "select address, provider_id from deliveries where state = 'sent'")
    assert sorted(sent) == sorted((message["to"], message["sid"]) for message in texts)
    open_rows = query(db, "select state, count(*) from deliveries where state in ('pending', 'sending') group by state")
    assert open_rows == [], f"rows left unfinished: {open_rows}"
    return received


# --- many runners, one campaign ---------------------------------------------------------


def two_workers_and_an_arq_send(processes, data, batch_size: int):  # noqa: ANN001, ANN201
    """Two `consentry worker`s and a `campaign send --backend arq` of the SMS campaign."""
    workers = [processes.start(f"worker-{n}", "worker", "--metrics-port", "0") for n in (1, 2)]
    on_arq = processes.start("send-arq", "campaign", "send", data.sms_yaml, "--backend", "arq",
                             "--batch-size", str(batch_size), "--concurrency", "4")
    return workers, on_arq


def test_workers_a_second_send_and_a_resume_on_one_campaign_text_each_recipient_once(
    tmp_path, fresh_postgres_url, redis_url, capture
):
    db = fresh_postgres_url
    # Paced so the arq side alone would take ~10-20 s: the inline runners' start-up (seconds on
    # a loaded host) must not outlast the campaign, or they find nothing left to send.
    data = dealership(tmp_path, db, contacts=1200, seed=21, rate=24)
    capture.run(setattr, capture.sms, "latency_ms", 10)
    started = time.monotonic()
    with Processes(tmp_path / "logs", runner_env(db, capture, redis_url)) as processes:
        workers, on_arq = two_workers_and_an_arq_send(processes, data, batch_size=200)
        # Once texts flow the campaign is launched (no launch race) and the workers are busy:
        # now two inline runners join in.
        capture.call(capture.sms.wait_for(20, timeout=60))
        resume = processes.start("resume", "campaign", "resume", CODE, "--tenant", data.tenant, "--concurrency", "4")
        second = processes.start("send-inline", "campaign", "send", data.sms_yaml, "--concurrency", "4")
        deadline = started + 150
        runners = [on_arq, resume, second]
        for runner in runners:
            runner.succeeded(deadline)
        for worker in workers:
            assert worker.popen.poll() is None, f"{worker.name} died:\n{worker.output()[-3000:]}"
    elapsed = time.monotonic() - started

    received = assert_each_recipient_once(db, capture.sms)
    assert len(received) > 200
    # Each text was sent by exactly one runner, and they overlapped: more than one sent some.
    by_runner = {runner.name: runner.sent() for runner in runners}
    assert sum(by_runner.values()) == len(received), by_runner
    assert sum(1 for n in by_runner.values() if n) >= 2, by_runner
    status = query(db, "select status from campaigns where code = :code", code=CODE)
    assert status == [("finished",)]
    print(f"{len(received)} texts by {by_runner} in {elapsed:.1f} s")


def test_runners_launching_the_same_new_campaign_at_once_all_succeed(tmp_path, fresh_postgres_url, capture):
    """Two `campaign send FILE` of a campaign nobody launched yet, at the same moment: both
    find no campaign, both insert it. The loser must continue the winner's campaign, not fail.
    (The race is made certain by holding inserts into `campaigns` until both have looked.)"""
    db = fresh_postgres_url
    data = dealership(tmp_path, db, contacts=100, seed=25, rate=500)
    waiting = "select count(*) from pg_locks where not granted and mode = 'RowExclusiveLock' and relation = 'campaigns'::regclass"
    started = time.monotonic()
    with Processes(tmp_path / "logs", runner_env(db, capture)) as processes:
        with table_locked(db, "campaigns", "SHARE"):  # reads go on, inserts wait
            runs = [processes.start(f"send-{n}", "campaign", "send", data.sms_yaml) for n in (1, 2)]
            wait_until(lambda: query(db, waiting)[0][0] == len(runs), started + 30, "both runners to insert the campaign")
        for run in runs:
            run.succeeded(started + 60)
    assert query(db, "select count(*) from campaigns") == [(1,)]
    assert_each_recipient_once(db, capture.sms)


def test_an_opt_in_request_left_pending_and_gated_again_is_still_sent(tmp_path, sqlite_url, capture):
    """Runners gate again every row they find pending: a row another runner recorded and has
    not claimed yet, or one a transport error left for later. A lead awaiting SMS opt-in
    whose opt-in request is such a row must still get that request. (The many-runner test
    above found this: with three runners, most opt-in requests were never sent. A transport
    error and a resume show it with one runner at a time.)"""
    db = sqlite_url
    data = dealership(tmp_path, db, contacts=200, seed=26, rate=500)
    capture.run(setattr, capture.sms, "fail_every_n", 1)  # every text: 503, retried, left pending
    assert consentry("campaign", "send", data.sms_yaml, "--db", db).code == 1
    waiting = query(db, "select count(*) from deliveries where purpose = 'opt_in_request' and state = 'pending'")[0][0]
    assert waiting > 0
    capture.run(setattr, capture.sms, "fail_every_n", 0)
    ok("campaign", "resume", CODE, "--tenant", data.tenant, "--db", db)
    outcomes = query(db, "select state, purpose, count(*) from deliveries where reason = 'awaiting_sms_opt_in' "
                         "group by state, purpose")
    assert outcomes == [("sent", "opt_in_request", waiting)]


# --- a worker killed mid-batch ----------------------------------------------------------


def test_a_worker_killed_mid_batch_is_taken_over_after_the_claim_ttl(tmp_path, fresh_postgres_url, redis_url, capture):
    db = fresh_postgres_url
    # ~230 texts at 20/s (a dozen seconds), in batches of 50: killed after 40, the victim
    # holds a batch and most of the campaign is still to send.
    data = dealership(tmp_path, db, contacts=600, seed=22, rate=20)
    capture.run(setattr, capture.sms, "latency_ms", 10)
    started = time.monotonic()
    with Processes(tmp_path / "logs", runner_env(db, capture, redis_url)) as processes:
        workers, on_arq = two_workers_and_an_arq_send(processes, data, batch_size=50)
        capture.call(capture.sms.wait_for(40, timeout=60))
        # The victim is a worker with a batch on the wire right now.
        victim = wait_until(
            lambda: next((w for w in workers if connected_to(w.pid, capture.sms.port)), None),
            time.monotonic() + 30, "a worker sending a batch",
        )
        victim.popen.send_signal(signal.SIGKILL)
        assert victim.wait(time.monotonic() + 10) == -signal.SIGKILL
        killed_at = time.monotonic()
        at_kill = capture.run(getattr, capture.sms, "accepted")  # read on the server's own loop
        # After the kill: the victim's arq job marks lapse within the ttl, the survivor picks
        # its jobs up and waits out the victim's claims (the ttl again), then sends the rest.
        # The rest takes a few seconds at this rate: the bound allows for both, and a loaded host.
        bound = 10 * TTL_S
        on_arq.succeeded(killed_at + bound)
        survivor = next(w for w in workers if w is not victim)
        assert survivor.popen.poll() is None, f"the surviving worker died:\n{survivor.output()[-3000:]}"
    after_kill = time.monotonic() - killed_at

    received = assert_each_recipient_once(db, capture.sms)
    assert at_kill < len(received), "the campaign was over before the kill"
    # The victim held claims when it died, and another runner took those rows over.
    taken_over = query(db, "select count(*) from deliveries where attempts > 1")[0][0]
    assert taken_over > 0
    assert query(db, "select status from campaigns where code = :code", code=CODE) == [("finished",)]
    reconciled = re.search(r"reconciled ([\d,]+) in doubt", on_arq.output())
    print(f"{len(received)} texts, {at_kill} before the kill, {taken_over} rows taken over "
          f"({reconciled[1] if reconciled else 0} found already sent at the provider); "
          f"finished {after_kill:.1f} s after the kill, {time.monotonic() - started:.1f} s in all")


def test_a_worker_killed_before_its_batch_reached_the_database_does_not_hold_the_batch_for_an_hour(
    tmp_path, fresh_postgres_url, redis_url, capture
):
    """arq marks a job in progress for its whole timeout (an hour); our job shortens the mark
    to the claim ttl. A worker killed before that (here: while its job waits for the database)
    must not leave the batch marked for an hour, or `send --backend arq` waits that long."""
    from arq.constants import in_progress_key_prefix

    from engine.backends.arq_backend import QUEUE, job_id

    db = fresh_postgres_url
    data = dealership(tmp_path, db, contacts=200, seed=24, rate=500)
    client = redis.Redis.from_url(redis_url)
    with Processes(tmp_path / "logs", runner_env(db, capture, redis_url)) as processes:
        on_arq = processes.start("send-arq", "campaign", "send", data.sms_yaml, "--backend", "arq")
        wait_until(lambda: client.zcard(QUEUE) > 0, time.monotonic() + 30, "the batch to be queued")
        campaign_id = query(db, "select id from campaigns where code = :code", code=CODE)[0][0]
        mark = in_progress_key_prefix + job_id(campaign_id, 0)
        with table_locked(db, "campaigns"):
            first = processes.start("worker-1", "worker", "--metrics-port", "0")
            # The job started (arq marked it) and waits for the campaign's row.
            wait_until(lambda: client.exists(mark) and query(
                db, "select count(*) from pg_locks where not granted and relation = 'campaigns'::regclass")[0][0],
                time.monotonic() + 30, "the worker's job to wait for the database")
            # The job renews its mark every ttl/6, for a ttl at a time, from its start on.
            try:
                wait_until(lambda: 0 < client.pttl(mark) <= TTL_S * 1000, time.monotonic() + TTL_S, "")
            except AssertionError:
                raise AssertionError(
                    f"the job's in-progress mark still lives {client.pttl(mark)} ms: a worker killed now "
                    "would hold its batch that long"
                ) from None
            first.popen.send_signal(signal.SIGKILL)
            first.wait(time.monotonic() + 10)
        killed_at = time.monotonic()
        # The mark lapses within the ttl; another worker runs the batch.
        processes.start("worker-2", "worker", "--metrics-port", "0")
        on_arq.succeeded(killed_at + 10 * TTL_S)
    client.close()
    assert_each_recipient_once(db, capture.sms)


# --- frequency caps under concurrency ---------------------------------------------------


def test_two_campaigns_at_once_never_exceed_the_frequency_cap(tmp_path, db_url, capture):
    """Cap: one text a day. Two campaigns over the same audience, started together: each
    number gets at most one text, and the other campaign's row says `frequency_capped`."""
    db = db_url
    data = dealership(tmp_path, db, contacts=600, seed=23, rate=40, cap_one=True)
    other = tmp_path / "second.yaml"
    other.write_text(data.sms_yaml.read_text().replace(f"campaign: {CODE}", f"campaign: {CODE}-2"))
    capture.run(setattr, capture.sms, "latency_ms", 10)
    started = time.monotonic()
    with Processes(tmp_path / "logs", runner_env(db, capture)) as processes:
        # One gating batch each: both record the whole audience as sendable before claiming,
        # so the cap is decided where the claims race (engine/send/claims.py).
        runs = [processes.start(name, "campaign", "send", path, "--concurrency", "4")
                for name, path in (("first", data.sms_yaml), ("second", other))]
        for run in runs:
            run.succeeded(started + 60)
    elapsed = time.monotonic() - started

    texts = capture.sms.messages
    received = Counter(message["to"] for message in texts)
    assert received and max(received.values()) == 1, {n: c for n, c in received.items() if c > 1}
    rows = query(db, "select d.contact_id, c.code, d.state, d.reason, d.address, d.provider_id "
                     "from deliveries d join campaigns c on c.id = d.campaign_id")
    assert sorted((address, sid) for _c, _code, state, _r, address, sid in rows if state == "sent") == sorted(
        (message["to"], message["sid"]) for message in texts
    )
    per_contact: dict[int, dict[str, tuple[str, str | None]]] = {}
    for contact, code, state, reason, _address, _sid in rows:
        per_contact.setdefault(contact, {})[code] = (state, reason)
    capped = 0
    for contact, by_code in per_contact.items():
        assert len(by_code) == 2, (contact, by_code)
        outcomes = sorted(by_code.values(), key=lambda outcome: outcome[0])
        if any(state == "sent" for state, _reason in outcomes):
            # One campaign texted this contact; the other was held back by the cap.
            assert outcomes == [("sent", None), ("suppressed", "frequency_capped")], (contact, by_code)
            capped += 1
        else:
            assert ("suppressed", "frequency_capped") not in outcomes, (contact, by_code)
            assert outcomes[0] == outcomes[1], (contact, by_code)  # the same rule held both back
    assert capped == len(received)
    # Both campaigns sent some: they really ran at the same time.
    by_run = {run.name: run.sent() for run in runs}
    assert all(by_run.values()) and sum(by_run.values()) == len(received), by_run
    assert query(db, "select count(*) from deliveries where state in ('pending', 'sending')") == [(0,)]
    print(f"{len(received)} texts {by_run} in {elapsed:.1f} s")
