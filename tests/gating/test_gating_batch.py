"""BatchEvaluator: order, shared addresses, resuming, and row orders other than the loader's."""

from __future__ import annotations

import random

from gating_cases import DAY, NOW, bulk, individual, outcome, tenant

from gating import (
    SEND,
    BatchEvaluator,
    ContactRow,
    Defer,
    LedgerRow,
    Reason,
    Suppress,
    TenantPolicy,
    build_states,
    compile_policy,
    decide,
)


def evaluator(message=None, **overrides) -> BatchEvaluator:
    message = message or bulk()
    return BatchEvaluator(compile_policy(TenantPolicy.from_mapping(tenant(**overrides)), message), message)


def row(contact_id: int, address: str | None = None, shared: bool = False, **fields) -> ContactRow:
    address = address if address is not None else f"c{contact_id}@example.com"
    return ContactRow(contact_id, f"C{contact_id}", address=address, address_valid=True, address_shared=shared, **fields)


def test_first_contact_with_a_shared_address_gets_the_send():
    audience = [row(1, "family@example.com", True), row(2, "family@example.com", True), row(3)]
    decisions = evaluator().evaluate(audience, [], {}, NOW)
    assert decisions == [SEND, Suppress(Reason.DUPLICATE_ADDRESS), SEND]


def test_duplicate_only_after_an_actual_send():
    audience = [row(1, "family@example.com", True), row(2, "family@example.com", True), row(3, "family@example.com", True)]
    ledger = [LedgerRow(1, 1, "opt_out", None, None, None, None, NOW - DAY)]
    decisions = evaluator().evaluate(audience, ledger, {}, NOW)
    assert [outcome(d) for d in decisions] == [("suppress", "opted_out"), ("send", None), ("suppress", "duplicate_address")]


def test_an_earlier_rule_beats_duplicate():
    audience = [row(1, "family@example.com", True), row(2, "family@example.com", True)]
    ledger = [LedgerRow(2, 1, "block", "email", None, None, None, NOW - DAY)]
    decisions = evaluator().evaluate(audience, ledger, {}, NOW)
    assert [outcome(d) for d in decisions] == [("send", None), ("suppress", "do_not_contact")]


def test_memory_spans_batches_and_only_holds_shared_addresses():
    gate = evaluator()
    assert gate.evaluate([row(1, "family@example.com", True), row(2)], [], {}, NOW) == [SEND, SEND]
    assert gate.evaluate([row(3, "family@example.com", True)], [], {}, NOW) == [Suppress(Reason.DUPLICATE_ADDRESS)]
    assert gate._sent == {"family@example.com"}


def test_unshared_rows_are_never_duplicates():
    # The loader only flags addresses other contacts also have; without the flag no memory.
    assert evaluator().evaluate([row(1, "same@example.com"), row(2, "same@example.com")], [], {}, NOW) == [SEND, SEND]


def test_mark_sent_seeds_a_resumed_campaign():
    gate = evaluator()
    gate.mark_sent("family@example.com")
    assert gate.evaluate([row(5, "family@example.com", True)], [], {}, NOW) == [Suppress(Reason.DUPLICATE_ADDRESS)]


def test_individual_messages_have_no_duplicate_rule():
    gate = evaluator(individual())
    audience = [row(1, "family@example.com", True), row(2, "family@example.com", True)]
    assert gate.evaluate(audience, [], {}, NOW) == [SEND, SEND]


def test_deferred_contact_does_not_count_as_sent():
    night = NOW + 10 * 3_600_000_000  # 02:00 in New York
    gate = evaluator(bulk("sms"), quiet_hours={"start": "21:00", "end": "08:00"})
    audience = [row(1, "+15550001", True), row(2, "+15550001", True, timezone="Asia/Tokyo")]
    decisions = gate.evaluate(audience, [], {}, night)
    assert isinstance(decisions[0], Defer) and decisions[1] == SEND


def test_quiet_hours_are_worked_out_once_per_zone_set():
    night = NOW + 10 * 3_600_000_000
    gate = evaluator(bulk("sms"), quiet_hours={"start": "21:00", "end": "08:00"})
    audience = [row(i, f"+1555000{i:04d}", timezone="America/Chicago") for i in range(1, 50)]
    decisions = gate.evaluate(audience, [], {}, night)
    assert len({id(d) for d in decisions}) == 1 and decisions[0].reason is Reason.QUIET_HOURS


def test_recent_sends_apply_per_contact():
    gate = evaluator(bulk("sms"), frequency_caps=[{"channel": "sms", "max": 2, "per_hours": 24}])
    decisions = gate.evaluate([row(1, "+1555"), row(2, "+1556")], [], {2: 2}, NOW)
    assert [outcome(d) for d in decisions] == [("send", None), ("suppress", "frequency_capped")]


def _random_batch(seed: int):
    rng = random.Random(seed)
    contacts = [row(cid) for cid in sorted(rng.sample(range(1, 500), 60))]
    ledger = []
    for event_id in range(1, 150):
        cid = rng.choice(contacts).contact_id if rng.random() < 0.9 else 10_000 + event_id  # some outside the batch
        action = rng.choice(["grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review"])
        ledger.append(LedgerRow(cid, event_id, action, rng.choice(["email", "*", "sms"]), rng.choice(["marketing", "*"]),
                                rng.choice(["first", "*"]), None, NOW - rng.randrange(1, 400) * DAY))
    ledger.sort(key=lambda r: (r.contact_id, r.occurred_at_us, r.event_id))
    return contacts, ledger


def test_any_row_order_gives_the_same_decisions():
    message = bulk(class_code="newsletter")
    for seed in range(20):
        contacts, ledger = _random_batch(seed)
        expected = evaluator(message).evaluate(contacts, ledger, {}, NOW)
        rng = random.Random(seed)
        shuffled_ledger = ledger[:]
        rng.shuffle(shuffled_ledger)
        assert evaluator(message).evaluate(contacts, shuffled_ledger, {}, NOW) == expected
        order = list(range(len(contacts)))
        rng.shuffle(order)
        decisions = evaluator(message).evaluate([contacts[i] for i in order], iter(shuffled_ledger), {}, NOW)
        assert decisions == [expected[i] for i in order]


def test_batch_matches_decide_per_contact():
    message = bulk(class_code="newsletter")
    compiled = compile_policy(TenantPolicy.from_mapping(tenant()), message)
    for seed in range(10):
        contacts, ledger = _random_batch(seed)
        states = build_states(contacts, ledger, compiled, {})
        assert BatchEvaluator(compiled, message).evaluate(contacts, ledger, {}, NOW) == [
            decide(state, message, compiled, NOW) for state in states
        ]


def test_empty_batch():
    assert evaluator().evaluate([], [], None, NOW) == []


def test_zone_sources_do_not_leak_between_contacts_of_a_batch():
    night_in_la = NOW + 13 * 3_600_000_000  # 05:00 UTC: 22:00 in Los Angeles, 14:00 in Tokyo
    gate = evaluator(bulk("sms"), quiet_hours={"start": "21:00", "end": "08:00"})
    audience = [
        row(1, "+15550001", address_zones="America/Los_Angeles"),
        row(2, "+15550002", timezone="Asia/Tokyo", address_zones="America/Los_Angeles"),
        row(3, "+15550003", timezone="Not/A_Zone", address_zones="America/Los_Angeles"),
        row(4, "+15550004", timezone="Asia/Tokyo"),
        row(5, "+15550005", timezone="Not/A_Zone"),  # no valid zone at all: the tenant's (New York, 01:00)
    ]
    assert [d.decision for d in gate.evaluate(audience, [], {}, night_in_la)] == ["defer", "send", "defer", "send", "defer"]
