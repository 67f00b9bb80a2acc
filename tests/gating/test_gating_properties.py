"""Invariants of gating over random policies, contacts and ledgers (hypothesis)."""

from __future__ import annotations

import random

from gating_cases import DAY, HOUR, MINUTE, NOW, at
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bench.baseline_gating import Baseline
from gating import (
    BatchEvaluator,
    ClassMode,
    ContactRow,
    Defer,
    LedgerRow,
    Message,
    Reason,
    TenantPolicy,
    build_states,
    compile_policy,
    decide,
    explain,
)
from gating.quiet_hours import is_quiet

CLASS_CODES = ("marketing", "service", "news", "tx")
CHANNELS = ("email", "sms", "voice", "letter", "social")
ACTIONS = ("grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review")
# US zones only for phone numbers: a spread of 3 hours, so with windows of at most 16 hours
# some instant of every day is quiet-free in all of them (see the quiet-hours property).
PHONE_ZONES = (None, "", "America/New_York", "America/Chicago America/Denver", "America/New_York America/Los_Angeles",
               "Etc/Unknown", "Etc/Unknown America/Denver")
CONTACT_ZONES = (None, "", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney", "Not/A_Zone")
# Instants near DST transitions, midnight and the quiet-hours edges, besides arbitrary ones.
NOTABLE = tuple(at(t) for t in (
    "2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z", "2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z",
    "2024-03-31T00:30:00Z", "2024-04-06T16:30:00Z", "2024-06-16T01:00:00Z", "2024-06-16T12:00:00Z",
))


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def tenant_mappings(draw, night_only: bool = False) -> dict:
    """Random policies; `night_only`: quiet hours always, and nothing else holds messages back."""
    quiet = None
    if night_only or draw(st.booleans()):
        start = draw(st.integers(0, 1439))
        length = draw(st.one_of(st.sampled_from((11 * 60, 10 * 60, 12 * 60, 16 * 60, 60)), st.integers(1, 16 * 60)))
        quiet = {"start": clock(start), "end": clock((start + length) % 1440)}
    cap_channel = draw(st.sampled_from((None, *CHANNELS)))
    if night_only:
        return {"tenant": "t", "name": "T", "timezone": draw(st.sampled_from(("America/New_York", "UTC"))),
                "classes": {code: {"mode": "exempt"} for code in CLASS_CODES}, "quiet_hours": quiet}
    return {
        "tenant": "t",
        "name": "T",
        "regime": draw(st.sampled_from(("opt_in", "opt_out"))),
        "timezone": draw(st.sampled_from(("America/New_York", "America/Chicago", "UTC"))),
        "classes": {code: ({} if mode is None else {"mode": mode})
                    for code, mode in zip(CLASS_CODES, draw(st.lists(st.sampled_from((None, "opt_in", "opt_out", "exempt")),
                                                                         min_size=4, max_size=4)), strict=True)},
        "sms": {"opt_in_required": draw(st.booleans()), "opt_in_excluded_sources": draw(st.sampled_from(([], ["Fullpath"])))},
        "reauthorization_days": draw(st.sampled_from(({}, {"sms": 365}, {"email": 30, "sms": 90}))),
        "review": {"period_days": draw(st.sampled_from((30, 183))), "enforce": draw(st.booleans())},
        "quiet_hours": quiet,
        "frequency_caps": [] if cap_channel is None else [{"channel": cap_channel, "max": draw(st.integers(1, 3)), "per_hours": 24}],
    }


def messages(kind=None, channel=None, class_code=None):
    return st.builds(
        Message,
        kind=st.sampled_from(("bulk", "individual")) if kind is None else st.just(kind),
        channel=st.sampled_from(("sms", "email", "sms", "voice", "letter", "social")) if channel is None else st.just(channel),
        class_code=st.sampled_from(CLASS_CODES) if class_code is None else st.just(class_code),
        party=st.sampled_from(("first", "third")),
        is_opt_in_request=st.booleans(),
    )


def address_for(contact_id: int, channel: str) -> str:
    return f"c{contact_id}@example.com" if channel == "email" else f"+1555000{contact_id:04d}"


OLD_ADDRESS = {"email": "old@example.com", "sms": "+15559999999"}


def make_audience(rng: random.Random, channel: str, shared: bool | None = None, distinct_times: bool = False):
    """(contact rows, ledger rows in loader order, recent sends), from a seeded generator.

    Plain `random` rather than hypothesis draws for the bulk of the data: a hundred
    primitive draws per example made the suite ten times slower; hypothesis still picks
    (and on failure reports) the seed, the policy and the message.
    """
    contacts, ledger, recent = [], [], {}
    event_id = 0
    for cid in sorted(rng.sample(range(1, 60), rng.randint(1, 5))):
        address = rng.choice(("current",) * 6 + ("none", "empty"))
        address = {"current": address_for(cid, channel), "none": None, "empty": ""}[address]
        is_shared = (rng.random() < 0.3) if shared is None else shared
        if is_shared and address:
            address = "shared@example.com" if channel == "email" else "+15550009999"
        contacts.append(ContactRow(
            cid, f"C{cid}",
            timezone=rng.choice(CONTACT_ZONES),
            lead_source=rng.choice((None, "", "fullpath", "Web")),
            reviewed_at_us=rng.choice((None, NOW - rng.randrange(400 * DAY))),
            address=address,
            address_valid=bool(address) and rng.random() < 0.85,
            address_zones=rng.choice(PHONE_ZONES),
            address_shared=bool(is_shared and address),
        ))
        recent[cid] = rng.randint(0, 4)
        for _ in range(rng.randint(0, 5)):
            event_id += 1
            ledger.append(LedgerRow(
                cid, event_id,
                rng.choice(ACTIONS),
                rng.choice((channel, channel, "*", None, *CHANNELS)),
                rng.choice((*CLASS_CODES, "*", None, "retired")),
                rng.choice(("first", "third", "*", None)),
                rng.choice((None, None, address, OLD_ADDRESS.get(channel, "x"))),
                # now itself, a common time (ties), or anything in the last 400 days / next day
                rng.choice((NOW, NOW - 7 * DAY, NOW + rng.randrange(-400 * DAY, DAY), NOW + rng.randrange(-400 * DAY, DAY))),
            ))
    if distinct_times:  # no two events share an instant (at most 25 events, 64 slots)
        ledger = [row._replace(occurred_at_us=row.occurred_at_us // 64 * 64 + row.event_id) for row in ledger]
    ledger.sort(key=lambda row: (row.contact_id, row.occurred_at_us, row.event_id))
    return contacts, ledger, recent


@st.composite
def scenarios(draw, message=None, shared: bool | None = None, distinct_times: bool = False, night_only: bool = False):
    mapping = draw(tenant_mappings(night_only))
    message = draw(messages() if message is None else message)
    rng = random.Random(draw(st.integers(0, 2**32)))
    contacts, ledger, recent = make_audience(rng, message.channel, shared, distinct_times)
    now = draw(st.one_of(st.sampled_from(NOTABLE), st.integers(NOW - 200 * DAY, NOW + 200 * DAY)))
    policy = compile_policy(TenantPolicy.from_mapping(mapping), message)
    return mapping, message, policy, contacts, ledger, recent, now


def decisions_by_decide(policy, message, contacts, ledger, recent, now):
    states = build_states(contacts, ledger, policy, recent, now_us=now)
    return [decide(state, message, policy, now) for state in states]


def later_than_all(ledger, now) -> int:
    return min(max((row.occurred_at_us for row in ledger), default=now - DAY) + 1, now)


@settings(max_examples=300)
@given(scenarios())
def test_every_entry_point_agrees(scenario):
    """decide == batch (unshared) == explain's first failure == the plain baseline."""
    mapping, message, policy, contacts, ledger, recent, now = scenario
    decided = decisions_by_decide(policy, message, contacts, ledger, recent, now)
    assert decided == decisions_by_decide(policy, message, contacts, ledger, recent, now)  # deterministic
    # States built for no instant work quiet hours out in decide itself: same answers.
    visible = [row for row in ledger if row.occurred_at_us <= now]
    assert [decide(state, message, policy, now) for state in build_states(contacts, visible, policy, recent)] == decided
    batch = BatchEvaluator(policy, message).evaluate(contacts, ledger, recent, now)
    for row, one, many in zip(contacts, decided, batch, strict=True):
        if not row.address_shared:
            assert one == many
        explanation = explain(row, ledger, message, policy, now, recent[row.contact_id])
        assert explanation.decision == one
        failures = [rule for rule in explanation.rules if rule.verdict == "fail"]
        assert (failures[0].code if failures else None) == one.reason
    baseline = Baseline(mapping, message.kind, message.channel, message.class_code, message.party, message.is_opt_in_request)
    plain = baseline.evaluate(contacts, ledger, recent, now)
    assert [(d.decision, d.reason and d.reason.value, getattr(d, "until_us", None)) for d in batch] == plain
    for decision in batch:
        event(decision.reason.value if decision.reason else "send")


@given(scenarios(), st.sampled_from(("same", "*")), st.booleans())
def test_a_block_on_the_channel_never_sends(scenario, channel, on_address):
    mapping, message, policy, contacts, ledger, recent, now = scenario
    blocked = list(ledger)
    for row in contacts:
        blocked.append(LedgerRow(row.contact_id, 10_000 + row.contact_id, "block",
                                 message.channel if channel == "same" else "*", None, None,
                                 row.address if on_address else None, later_than_all(ledger, now)))
    blocked.sort(key=lambda r: (r.contact_id, r.occurred_at_us, r.event_id))
    for decision in BatchEvaluator(policy, message).evaluate(contacts, blocked, recent, now):
        assert decision.reason in (Reason.NO_ADDRESS, Reason.INVALID_ADDRESS, Reason.DO_NOT_CONTACT)


@given(scenarios(message=messages(kind="individual")))
def test_individual_messages_ignore_opt_out_and_consent_but_not_blocks(scenario):
    mapping, message, policy, contacts, ledger, recent, now = scenario
    before = decisions_by_decide(policy, message, contacts, ledger, recent, now)
    when = later_than_all(ledger, now)
    extra = [LedgerRow(row.contact_id, 20_000 + row.contact_id * 2 + k, action, "*", "*", "*", None, when)
             for row in contacts for k, action in enumerate(("opt_out", "revoke"))]
    after = decisions_by_decide(policy, message, contacts, sorted(ledger + extra, key=lambda r: (r[0], r[7], r[1])), recent, now)
    assert after == before
    for decision in before:
        # The opt-in request is automated: quiet hours hold it like a campaign text.
        held_for_the_night = message.is_opt_in_request and decision.reason is Reason.QUIET_HOURS
        assert decision.decision == "send" or decision.reason.rule <= 4 or held_for_the_night


@given(scenarios())
def test_exempt_classes_ignore_consent(scenario):
    mapping, message, policy, contacts, ledger, recent, now = scenario
    if policy.mode is not ClassMode.EXEMPT:
        mapping = {**mapping, "classes": {**mapping["classes"], message.class_code: {"mode": "exempt"}}}
        policy = compile_policy(TenantPolicy.from_mapping(mapping), message)
    before = decisions_by_decide(policy, message, contacts, ledger, recent, now)
    # Grants stay (an SMS grant also ends the opt-in wait, which is not about consent).
    without = [row for row in ledger if row.action not in ("revoke", "opt_out", "opt_in", "review")]
    when = later_than_all(ledger, now)
    extra = [LedgerRow(row.contact_id, 30_000 + row.contact_id * 2 + k, action, "*", "*", "*", None, when)
             for row in contacts for k, action in enumerate(("opt_out", "revoke"))]
    for variant in (without, sorted(ledger + extra, key=lambda r: (r[0], r[7], r[1]))):
        assert decisions_by_decide(policy, message, contacts, variant, {}, now) == \
            decisions_by_decide(policy, message, contacts, ledger, {}, now)
    assert all(d.reason is None or d.reason.rule <= 5 or d.reason is Reason.QUIET_HOURS for d in before)


@given(scenarios(distinct_times=True), st.randoms(use_true_random=False))
def test_time_decides_not_insertion_order(scenario, rng: random.Random):
    mapping, message, policy, contacts, ledger, recent, now = scenario
    expected = decisions_by_decide(policy, message, contacts, ledger, recent, now)
    ids = [row.event_id for row in ledger]
    rng.shuffle(ids)
    renumbered = [row._replace(event_id=new_id) for row, new_id in zip(ledger, ids, strict=True)]
    rng.shuffle(renumbered)
    assert decisions_by_decide(policy, message, contacts, renumbered, recent, now) == expected
    assert BatchEvaluator(policy, message).evaluate(contacts, renumbered, recent, now) == \
        BatchEvaluator(policy, message).evaluate(contacts, ledger, recent, now)


@given(scenarios(message=messages(kind="bulk", channel="sms"), night_only=True))
def test_quiet_hours_defers_land_outside_the_window(scenario):
    mapping, message, policy, contacts, ledger, recent, now = scenario
    states = build_states(contacts, ledger, policy, recent, now_us=now)
    for state in states:
        decision = decide(state, message, policy, now)
        if not isinstance(decision, Defer):
            continue
        assert decision.reason is Reason.QUIET_HOURS
        event("deferred")
        assert now < decision.until_us <= now + 25 * HOUR
        assert any(is_quiet(policy.quiet, zone, now) for zone in state.zones.zones)
        for zone in state.zones.zones:
            assert not is_quiet(policy.quiet, zone, decision.until_us)
        # ...and it is the first such instant: a minute earlier some zone was still quiet.
        assert any(is_quiet(policy.quiet, zone, max(now, decision.until_us - MINUTE)) for zone in state.zones.zones)
