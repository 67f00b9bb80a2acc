"""Benchmark of gating/: decide, the batch path, and the plain per-recipient baseline.

    .venv/bin/python -m bench.bench_gating                      # 1,000,000 recipients, both scenarios
    .venv/bin/python -m bench.bench_gating --recipients 200000 --scenario email --repeat 5

A synthetic audience in loader shape (docs/architecture.md), batches of 1,000 as the engine
reads them, a realistic mix: most recipients get the message; a tenth each are opted out,
blocked, or without consent; a fifth of the rest carry a few extra grants, reviews and old
revokes; 1% have no address, 1% an invalid one, 0.5% share an address. Data is generated
before the clock starts. Three figures per scenario, measured in the same run, interleaved
`--repeat` times (best and median reported; the machine may be shared and noisy):

- decide: `decide(state, ...)` over states already built (the per-recipient check);
- batch:  `BatchEvaluator.evaluate(rows...)` from loader rows to decisions (states included);
- baseline: bench/baseline_gating.py, which walks each recipient's raw events rule by rule.

The batch path's decisions are checked against the baseline's before anything is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from bench.baseline_gating import Baseline
from gating import BatchEvaluator, Message, TenantPolicy, build_states, compile_policy, decide

DAY = 86_400_000_000
NOW = 1_718_505_000_000_000  # 2024-06-16T02:30:00Z: 22:30 in New York (quiet), 19:30 in Los Angeles (not)

TENANT = {
    "tenant": "bench-motors",
    "name": "Bench Motors",
    "regime": "opt_in",
    "timezone": "America/New_York",
    "classes": {"marketing": {}, "service": {"mode": "opt_out"}, "transactional": {"mode": "exempt"}},
    "sms": {"opt_in_required": True, "opt_in_excluded_sources": ["Fullpath"]},
    "reauthorization_days": {"sms": 365},
    "review": {"period_days": 183, "enforce": False},
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    "frequency_caps": [{"channel": "sms", "max": 3, "per_hours": 24}],
}

SCENARIOS = {
    # An eDM: bulk email, marketing needs a grant (opt-in regime).
    "email": Message("bulk", "email", "marketing"),
    # A bulk text: opt-in text first, reauthorization, a cap, and quiet hours across US zones.
    "sms": Message("bulk", "sms", "marketing"),
}

US_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
PHONE_ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "America/New_York America/Chicago",
               "Etc/Unknown")


@dataclass(slots=True)
class Batch:
    contacts: list[tuple]
    ledger: list[tuple]
    recent: dict[int, int]


def make_batches(recipients: int, batch_size: int, channel: str, seed: int) -> list[Batch]:
    rng = random.Random(seed)
    batches = []
    event_id = 0
    for first in range(1, recipients + 1, batch_size):
        contacts, ledger, recent = [], [], {}
        for cid in range(first, min(first + batch_size, recipients + 1)):
            roll = rng.random()
            address = f"customer{cid}@example.com" if channel == "email" else f"+1555{cid:07d}"
            shared = (cid // 4) % 200 == 0  # 0.5% of contacts, in households of four
            if shared:
                address = f"family{cid // 4}@example.com" if channel == "email" else f"+1444{cid // 4:07d}"
            valid = True
            if roll < 0.01:
                address, valid, shared = None, None, False
            elif roll < 0.02:
                valid = False
            timezone = rng.choice(US_ZONES) if rng.random() < 0.5 else None
            lead_source = rng.choice(("Website", "Fullpath", "Walk-in", None))
            reviewed = NOW - rng.randrange(400) * DAY if rng.random() < 0.7 else None
            contacts.append((cid, f"C{cid}", timezone, lead_source, reviewed, address, valid, rng.choice(PHONE_ZONES), shared))
            events = contact_events(rng, cid, channel, address, event_id)
            event_id += len(events)
            events.sort(key=lambda e: (e[7], e[1]))
            ledger.extend(events)
            if rng.random() < 0.05:
                recent[cid] = rng.randint(1, 4)
        batches.append(Batch(contacts, ledger, recent))
    return batches


def contact_events(rng: random.Random, cid: int, channel: str, address: str | None, last_id: int) -> list[tuple]:
    """One contact's ledger: opted out, blocked, without consent (a tenth each), or consented."""
    events: list[tuple] = []

    def add(action, ch=None, cls=None, party=None, on=None, days_ago=None):
        when = NOW - (rng.randrange(1, 300) if days_ago is None else days_ago) * DAY - rng.randrange(DAY)
        events.append((cid, last_id + len(events) + 1, action, ch, cls, party, on, when))

    kind = rng.random()
    if kind < 0.10:  # opted out of marketing
        add("grant", channel, "marketing", "first")
        add("opt_out", days_ago=rng.randrange(1, 30))
    elif kind < 0.20:  # blocked on the channel (STOP, unsubscribe from everything)
        add("grant", channel, "*", "*")
        add("block", rng.choice((channel, "*")), on=address if rng.random() < 0.5 else None, days_ago=rng.randrange(1, 30))
    elif kind < 0.30:  # no consent: nothing, or a grant since revoked
        if rng.random() < 0.5:
            add("grant", channel, "marketing", "first", days_ago=rng.randrange(100, 300))
            add("revoke", channel, "*", "*", days_ago=rng.randrange(1, 90))
    else:  # consented
        add("grant", channel, "marketing", "first", on=address if rng.random() < 0.3 else None)
        if rng.random() < 0.2:  # a few more grants, a review, an old revoke then a re-grant
            add("grant", "*", "service", "first")
            add("grant", "sms", "*", "third")
            add("review", days_ago=rng.randrange(1, 100))
            add("revoke", channel, "marketing", "first", days_ago=rng.randrange(300, 400))
    return events


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is what a loaded machine
    cannot steal, wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(name: str, recipients: int, batch_size: int, repeat: int, seed: int) -> dict[str, float]:
    message = SCENARIOS[name]
    policy = compile_policy(TenantPolicy.from_mapping(TENANT), message)
    batches = make_batches(recipients, batch_size, message.channel, seed)
    events = sum(len(b.ledger) for b in batches)
    states = [build_states(b.contacts, b.ledger, policy, b.recent, now_us=NOW) for b in batches]

    # Correctness first: the batch path against the plain baseline, every recipient.
    evaluator = BatchEvaluator(policy, message)
    baseline = Baseline(TENANT, message.kind, message.channel, message.class_code, message.party)
    counts: Counter = Counter()
    for batch in batches:
        fast = evaluator.evaluate(batch.contacts, batch.ledger, batch.recent, NOW)
        plain = baseline.evaluate(batch.contacts, batch.ledger, batch.recent, NOW)
        assert [(d.decision, d.reason and d.reason.value, getattr(d, "until_us", None)) for d in fast] == plain
        counts.update((d.decision, d.reason.value if d.reason else "") for d in fast)

    def run_decide():
        for batch_states in states:
            for state in batch_states:
                decide(state, message, policy, NOW)

    def run_batch():
        gate = BatchEvaluator(policy, message)
        for batch in batches:
            gate.evaluate(batch.contacts, batch.ledger, batch.recent, NOW)

    def run_baseline():
        plain = Baseline(TENANT, message.kind, message.channel, message.class_code, message.party)
        for batch in batches:
            plain.evaluate(batch.contacts, batch.ledger, batch.recent, NOW)

    times: dict[str, list[tuple[float, float]]] = {"decide": [], "batch": [], "baseline": []}
    for _ in range(repeat):
        times["decide"].append(timed(run_decide))
        times["batch"].append(timed(run_batch))
        times["baseline"].append(timed(run_baseline))

    print(f"\n== {name}: bulk {message.channel} {message.class_code}, {recipients:,} recipients, {events:,} events, "
          f"batches of {batch_size}, best/median of {repeat}")
    for (decision, reason), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"   {decision:9s}{reason:22s}{n:>10,} {100 * n / recipients:6.2f}%")
    rates = {}
    print(f"   {'':28s}{'wall best':>14s}{'wall median':>14s}{'CPU best':>14s}   (recipients/s)")
    for key, label in (("decide", "decide (states built)"), ("batch", "batch (rows -> decisions)"),
                       ("baseline", "baseline (raw events)")):
        walls, cpus = [w for w, _ in times[key]], [c for _, c in times[key]]
        rates[key] = recipients / min(walls)
        rates[key + "_median"] = recipients / statistics.median(walls)
        rates[key + "_cpu"] = recipients / min(cpus)
        print(f"   {label:28s}{rates[key]:>14,.0f}{rates[key + '_median']:>14,.0f}{rates[key + '_cpu']:>14,.0f}")
    for key in ("batch", "decide"):
        print(f"   {key + ' / baseline':28s}{rates[key] / rates['baseline']:>13.1f}x"
              f"{rates[key + '_median'] / rates['baseline_median']:>13.1f}x{rates[key + '_cpu'] / rates['baseline_cpu']:>13.1f}x")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    args = parser.parse_args()
    for name in SCENARIOS if args.scenario == "all" else (args.scenario,):
        bench(name, args.recipients, args.batch, args.repeat, args.seed)


if __name__ == "__main__":
    main()
