"""Telling a relay that refuses *us* from a relay that refuses some recipients.

A relay answers 5.7.x (RFC 3463: security or policy) both when one recipient is not
allowed (a domain it will not relay to, a mailbox that takes no outside mail) and when it
refuses everything we send (we did not authenticate, our address or account is not
allowed). Failing every recipient in the second case loses the campaign: failed rows are
final, and `resume` skips them. So:

- a refusal carrying a 5.7.x status is *held*: neither recorded failed nor pending, its
  row still claimed by this runner (a crash leaves it in doubt, and the next runner sends
  it again: it was refused, so nothing is duplicated);
- refusals with the same status held one after another make a row; a message the relay
  accepts, or one refused for another reason, ends the row, and the held refusals are
  recorded failed, as they came;
- when the row reaches `threshold` (CONSENTRY_SMTP_POLICY_STOP_AFTER, default 5) the relay
  refuses us: every held refusal is recorded pending, and so is every later one, and the
  run stops with a `RelayPolicyError`.

"In a row" is in the order the replies arrive, across all workers. Transient failures and
messages not attempted neither extend nor end a row: they say nothing about the policy.
"""

from __future__ import annotations

from dataclasses import replace

from engine.db.states import DeliveryState
from engine.send.content import Job
from engine.send.results import Result
from engine.transports.errors import PermanentError, RelayPolicyError


class PolicyBreaker:
    """Holds 5.7.x refusals until the row they make is ended or long enough to stop."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  # 0: never stop, record every refusal as it comes
        self.tripped: RelayPolicyError | None = None
        self._status: str | None = None
        self._held: list[tuple[Job, Result]] = []
        self._first: PermanentError | None = None  # the refusal that started the row

    def observe(self, job: Job, result: Result, refusal: PermanentError | None = None) -> list[tuple[Job, Result]]:
        """Take one delivery's result (and, for a refusal, the error it came from); returns
        the results to record now, maybe none."""
        status = result.policy_status if result.state == DeliveryState.FAILED else None
        if self.tripped is not None and status is not None:
            return [(job, _pending(result))]
        if status is None or self.threshold <= 0:
            if result.state in (DeliveryState.SENT, DeliveryState.FAILED):
                return [*self.drain(), (job, result)]
            return [(job, result)]
        released = self.drain() if status != self._status else []
        if not self._held:
            self._first = refusal
        self._status = status
        self._held.append((job, result))
        if len(self._held) < self.threshold:
            return released
        first = self._first
        self.tripped = RelayPolicyError(
            f"{first.message if first else result.error} ({len(self._held)} in a row)", first.code if first else None,
            context="relay refuses recipients by policy",
        )
        held, self._held, self._status = self._held, [], None
        return released + [(held_job, _pending(held_result)) for held_job, held_result in held]

    def drain(self) -> list[tuple[Job, Result]]:
        """The held refusals, as they came (failed): their row ended short of the threshold."""
        held, self._held, self._status = self._held, [], None
        return held


def _pending(result: Result) -> Result:
    """A refusal by a relay that refuses us: nothing about the recipient, so left for resume."""
    return replace(result, state=DeliveryState.PENDING, block_cause=None)
