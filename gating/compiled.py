"""A tenant policy compiled for one message: everything the rules read, precomputed.

What it is for: doing once per campaign all the work that does not depend on the
recipient (class mode after the regime, units converted to microseconds, the cap and
window for the channel, the ledger effect table, which rules apply at all), so gating a
recipient is a few integer checks. What it must never do: change after it is built, or
hold anything about a recipient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from zoneinfo import ZoneInfo

from gating.errors import PolicyError, UnknownClassError
from gating.ledger import effect_table, effects_read
from gating.message import BULK, INDIVIDUAL, Message
from gating.policy import ClassMode, TenantPolicy
from gating.quiet_hours import QuietWindow, load_zone
from gating.rules import live_mask

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR


@dataclass(frozen=True, slots=True)
class Cap:
    """The frequency cap of the message's channel: `max` bulk sends per `window_us`."""

    max: int
    window_us: int


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """`TenantPolicy` resolved for `message`'s channel, class and party.

    `live` is the bit set of rules that can fail for `message` (bit n = rule n); `widest`
    the same for its bulk, non-opt-in-request twin, which every variant is a subset of.
    """

    tenant: str
    message: Message
    mode: ClassMode
    is_exempt: bool
    requires_grant: bool
    reauthorization_us: int | None
    review_period_us: int
    review_enforced: bool
    quiet: QuietWindow | None
    cap: Cap | None
    sms_opt_in_required: bool
    excluded_sources: frozenset[str]
    zone: ZoneInfo
    relevant_effects: int = 0
    _effects: dict[tuple, int] = field(repr=False, default_factory=dict)  # never mutated
    live: int = 0
    widest: int = 0
    _live_by_variant: Mapping[tuple[str, bool], int] = field(repr=False, default_factory=dict)

    @property
    def event_effects(self) -> Mapping[tuple, int]:
        """(action, channel, class, party) -> effect flags on this target (read-only view)."""
        return MappingProxyType(self._effects)

    @property
    def channel(self) -> str:
        return self.message.channel

    @property
    def class_code(self) -> str:
        return self.message.class_code

    @property
    def party(self) -> str:
        return self.message.party

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.message.channel, self.message.class_code, self.message.party)

    def live_for(self, message: Message) -> int:
        """The live rule bits for `message`, which must share this policy's target.

        Kind and `is_opt_in_request` may differ from the compiled message (an individual
        reply gated on a campaign's states); channel, class and party may not, since the
        states were resolved for them.
        """
        if message is self.message:
            return self.live
        if (message.channel, message.class_code, message.party) != self.target:
            raise PolicyError(
                f"message targets {message.channel}/{message.class_code}/{message.party} but the "
                f"policy was compiled for {self.channel}/{self.class_code}/{self.party}",
                field="message",
            )
        return self._live_by_variant[(message.kind, message.is_opt_in_request)]


def compile_policy(policy: TenantPolicy, message: Message) -> CompiledPolicy:
    """Compile `policy` for `message`; `UnknownClassError` if the class is not in it."""
    mode = policy.classes.get(message.class_code)
    if mode is None:
        raise UnknownClassError(message.class_code, tuple(policy.classes))
    reauthorization_days = policy.reauthorization_days.get(message.channel)
    cap = next((c for c in policy.frequency_caps if c.channel == message.channel), None)
    zone = load_zone(policy.timezone)
    if zone is None:  # TenantPolicy checks this; a hand-built one might not have
        raise PolicyError(f"{policy.timezone!r} is not an IANA time zone", field="timezone")
    # Which rules can fail depends only on the message's kind and opt-in flag once the
    # target is fixed: work out all four variants from the rule table now.
    draft = CompiledPolicy(
        tenant=policy.tenant,
        message=message,
        mode=mode,
        is_exempt=mode is ClassMode.EXEMPT,
        requires_grant=mode is ClassMode.OPT_IN,
        reauthorization_us=None if reauthorization_days is None else reauthorization_days * US_PER_DAY,
        review_period_us=policy.review_period_days * US_PER_DAY,
        review_enforced=policy.review_enforced,
        quiet=policy.quiet_hours,
        cap=None if cap is None else Cap(cap.max, cap.per_hours * US_PER_HOUR),
        sms_opt_in_required=policy.sms.opt_in_required,
        excluded_sources=frozenset(s.lower() for s in policy.sms.opt_in_excluded_sources),
        zone=zone,
    )
    variants = {
        (kind, opt_in): live_mask(Message(kind, message.channel, message.class_code, message.party, opt_in), draft)
        for kind in (BULK, INDIVIDUAL)
        for opt_in in (False, True)
    }
    widest = variants[(BULK, False)]
    relevant = effects_read(widest)
    return replace(
        draft,
        relevant_effects=relevant,
        _effects=effect_table((message.channel, message.class_code, message.party), tuple(policy.classes), relevant),
        live=variants[(message.kind, message.is_opt_in_request)],
        widest=widest,
        _live_by_variant=MappingProxyType(variants),
    )
