"""The three outcomes of gating one recipient: Send, Suppress(reason), Defer(until, reason).

What it is for: small immutable values the shell records and acts on. `Send` and every
`Suppress` are shared instances (`SEND`, `suppressed(reason)`), so gating a million
recipients allocates no decision objects except the rare `Defer`.
What it must never do: know how a decision is carried out (sending, recording, retrying).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from gating.reasons import Reason


class DecisionKind(StrEnum):
    """The three outcomes, as recorded in `decision` columns and reports."""

    SEND = "send"
    SUPPRESS = "suppress"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Send:
    """Every rule passed: send the message now."""

    decision: ClassVar[DecisionKind] = DecisionKind.SEND
    reason: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class Suppress:
    """A rule failed: do not send this message to this recipient."""

    reason: Reason
    decision: ClassVar[DecisionKind] = DecisionKind.SUPPRESS


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: try again at `until_us` (microseconds since the epoch, UTC)."""

    until_us: int
    reason: Reason
    decision: ClassVar[DecisionKind] = DecisionKind.DEFER


Decision = Send | Suppress | Defer

SEND = Send()

_SUPPRESS = {reason: Suppress(reason) for reason in Reason}


def suppressed(reason: Reason) -> Suppress:
    """The shared `Suppress` instance for `reason`."""
    return _SUPPRESS[reason]
