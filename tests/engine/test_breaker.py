"""The policy breaker on plain values: which refusals are the recipients' and which the relay's.

`observe` gets results in the order replies arrive; what it returns is what gets recorded.
"""

from __future__ import annotations

import pytest

from engine.db.states import DeliveryState, Purpose
from engine.send.breaker import PolicyBreaker
from engine.send.content import Job
from engine.send.results import Result
from engine.transports.errors import PermanentError, StopCause

SENT = "sent"
OTHER = "550 5.1.1"  # a hard bounce: refused for another reason
TRANSIENT = "451"


def refusal(status: str = "5.7.1") -> tuple[Result, PermanentError]:
    error = PermanentError(f"{status} <x@customers.example>: Recipient address rejected: Access denied", 554)
    return Result(DeliveryState.FAILED, error=f"554: {error.message}", policy_status=error.policy_status), error


def outcome(kind: str) -> tuple[Result, PermanentError | None]:
    if kind == SENT:
        return Result(DeliveryState.SENT, provider_id="<m@acme>"), None
    if kind == OTHER:
        error = PermanentError("5.1.1 <x@customers.example>: User unknown", 550, "hard_bounce")
        return Result(DeliveryState.FAILED, error="550: ...", block_cause="hard_bounce", policy_status=error.policy_status), error
    if kind == TRANSIENT:
        return Result(DeliveryState.PENDING, error="transient: 451 4.3.0 try later"), None
    return refusal(kind)


def run(threshold: int, replies: list[str]) -> tuple[list[str], PolicyBreaker]:
    """Feed the replies; the states recorded, in recording order (drained at the end)."""
    breaker = PolicyBreaker(threshold)
    recorded: list[tuple[Job, Result]] = []
    for n, kind in enumerate(replies):
        result, error = outcome(kind)
        recorded += breaker.observe(Job(n, n, f"C{n}", f"c{n}@customers.example", Purpose.CAMPAIGN), result, error)
    recorded += breaker.drain()
    assert sorted(job.delivery_id for job, _result in recorded) == list(range(len(replies))), "every result recorded once"
    by_id = {job.delivery_id: str(result.state) for job, result in recorded}
    return [by_id[n] for n in range(len(replies))], breaker


@pytest.mark.parametrize(("threshold", "replies", "states", "trips"), [
    # Five in a row: the relay refuses us. All five pending, and every later refusal too.
    (5, ["5.7.1"] * 5, ["pending"] * 5, True),
    (5, [SENT] + ["5.7.1"] * 6 + [SENT], ["sent"] + ["pending"] * 6 + ["sent"], True),
    # Rows ended by an accepted message, or by a refusal of another kind: the recipients'.
    (5, ["5.7.1"] * 4 + [SENT] + ["5.7.1"] * 4, ["failed"] * 4 + ["sent"] + ["failed"] * 4, False),
    (5, ["5.7.1"] * 4 + [OTHER] + ["5.7.1"], ["failed"] * 4 + ["failed"] + ["failed"], False),
    # A different 5.7.x starts a new row.
    (5, ["5.7.1", "5.7.1", "5.7.26", "5.7.26", "5.7.1", "5.7.1"], ["failed"] * 6, False),
    # Transient failures neither extend nor end a row.
    (3, ["5.7.1", TRANSIENT, "5.7.1", TRANSIENT, "5.7.1"], ["pending"] * 5, True),
    # 0: never stop; each refusal recorded as it comes.
    (0, ["5.7.1"] * 8, ["failed"] * 8, False),
])
def test_rows_of_policy_refusals(threshold: int, replies: list[str], states: list[str], trips: bool) -> None:
    recorded, breaker = run(threshold, replies)
    assert recorded == states
    assert (breaker.tripped is not None) is trips
    if trips:
        assert breaker.tripped.stop_cause == StopCause.POLICY
        assert str(breaker.tripped).startswith("relay refuses recipients by policy: 554 5.7.1 <x@customers.example>")


def test_the_reason_counts_the_row() -> None:
    _states, breaker = run(5, ["5.7.1"] * 5)
    assert str(breaker.tripped).endswith("Access denied (5 in a row)")


def test_held_refusals_are_not_recorded_until_their_row_ends() -> None:
    breaker = PolicyBreaker(5)
    result, error = refusal()
    job = Job(1, 1, "C1", "c1@customers.example", Purpose.CAMPAIGN)
    assert breaker.observe(job, result, error) == []
    sent, _ = outcome(SENT)
    assert [str(r.state) for _j, r in breaker.observe(Job(2, 2, "C2", "c2@x", Purpose.CAMPAIGN), sent)] == ["failed", "sent"]
