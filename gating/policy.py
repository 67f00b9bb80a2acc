"""The tenant policy: tenant.yaml (FORMATS.md) as one immutable, checked object.

What it is for: reading an already-validated tenant.yaml mapping, filling the FORMATS.md
defaults for missing optional keys, and refusing nonsense with a `PolicyError` that names
the key. What it must never do: read files or YAML, or know about campaigns; the shell
hands over a plain mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from gating.errors import PolicyError
from gating.message import CHANNELS
from gating.quiet_hours import QuietWindow, load_zone

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TENANT = re.compile(r"^[a-z0-9-]+$")


class ClassMode(StrEnum):
    """How a communication class treats consent (a regime is one of the first two)."""

    OPT_IN = "opt_in"  # send only with a grant (GDPR style)
    OPT_OUT = "opt_out"  # send unless revoked
    EXEMPT = "exempt"  # no consent needed; blocks still apply


REGIMES = (ClassMode.OPT_IN, ClassMode.OPT_OUT)

# FORMATS.md defaults, used for every key a mapping leaves out.
DEFAULT_CLASSES = {"marketing": {}, "service": {}, "survey": {}, "transactional": {"mode": "exempt"}}
DEFAULT_OPT_IN_MESSAGE = (
    "Hi {{ first_name }}, this is {{ agent_name }} from {{ tenant_name }}. Thanks for "
    "contacting us! Please reply YES to confirm it's OK to text you about your inquiry. "
    "Msg & data rates may apply. Reply STOP to cancel."
)
DEFAULT_OPT_OUT_FOOTER = "Reply STOP to opt out of texts from this number."
DEFAULT_REVIEW_PERIOD_DAYS = 183  # "reviewed ... within 6 months"


@dataclass(frozen=True, slots=True)
class SmsPolicy:
    """SMS first touch: is the first text the opt-in request, and for which lead sources not."""

    opt_in_required: bool = False
    opt_in_excluded_sources: tuple[str, ...] = ()
    opt_in_message: str = DEFAULT_OPT_IN_MESSAGE
    opt_out_footer: str = DEFAULT_OPT_OUT_FOOTER


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `max` bulk messages on `channel` per `per_hours` hours."""

    channel: str
    max: int
    per_hours: int


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """One tenant's consent rules. Build it with `TenantPolicy.from_mapping`.

    `classes` maps each class code to its effective mode: a class given as `{}` has
    already been resolved to the regime, an explicit mode overrides it.
    """

    tenant: str
    name: str
    regime: ClassMode
    country: str
    timezone: str
    postal_address: str
    classes: Mapping[str, ClassMode]
    sms: SmsPolicy
    reauthorization_days: Mapping[str, int]
    review_period_days: int
    review_enforced: bool
    quiet_hours: QuietWindow | None
    frequency_caps: tuple[FrequencyCap, ...]

    @property
    def zone(self) -> ZoneInfo:
        """The tenant's time zone (checked at construction)."""
        zone = load_zone(self.timezone)
        assert zone is not None
        return zone

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TenantPolicy:
        """Read a tenant.yaml mapping (FORMATS.md shape); missing optional keys take defaults."""
        if not isinstance(data, Mapping):
            raise PolicyError("a tenant policy is a mapping")
        tenant = _string(data, "tenant", required=True)
        if not _TENANT.match(tenant):
            raise PolicyError(f"{tenant!r} is not a tenant id ([a-z0-9-])", field="tenant")
        regime = _choice(data.get("regime", "opt_out"), REGIMES, "regime")
        timezone = _string(data, "timezone", default="UTC")
        if load_zone(timezone) is None:
            raise PolicyError(f"{timezone!r} is not an IANA time zone", field="timezone")
        sms = _mapping(data, "sms")
        review = _mapping(data, "review")
        return cls(
            tenant=tenant,
            name=_string(data, "name", default=tenant),
            regime=regime,
            country=_string(data, "country", default="US").upper(),
            timezone=timezone,
            postal_address=_string(data, "postal_address", default=""),
            classes=MappingProxyType(_classes(data.get("classes", DEFAULT_CLASSES), regime)),
            sms=SmsPolicy(
                opt_in_required=_boolean(sms.get("opt_in_required", False), "sms.opt_in_required"),
                opt_in_excluded_sources=_strings(sms.get("opt_in_excluded_sources") or [], "sms.opt_in_excluded_sources"),
                opt_in_message=_string(sms, "opt_in_message", default=DEFAULT_OPT_IN_MESSAGE, prefix="sms."),
                opt_out_footer=_string(sms, "opt_out_footer", default=DEFAULT_OPT_OUT_FOOTER, prefix="sms."),
            ),
            reauthorization_days=MappingProxyType(_reauthorization(data.get("reauthorization_days") or {})),
            review_period_days=_positive(review.get("period_days", DEFAULT_REVIEW_PERIOD_DAYS), "review.period_days"),
            review_enforced=_boolean(review.get("enforce", False), "review.enforce"),
            quiet_hours=_quiet_hours(data.get("quiet_hours")),
            frequency_caps=_caps(data.get("frequency_caps") or []),
        )


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError("must be a mapping", field=key)
    return value


def _string(data: Mapping[str, Any], key: str, *, default: str | None = None, required: bool = False, prefix: str = "") -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise PolicyError("is required", field=prefix + key)
        return default  # type: ignore[return-value]
    if not isinstance(value, str):
        raise PolicyError(f"{value!r} is not a string", field=prefix + key)
    return value


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise PolicyError("must be a list of strings", field=field)
    for item in value:
        if not isinstance(item, str):
            raise PolicyError(f"{item!r} is not a string", field=field)
    return tuple(value)


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{value!r} is not true or false", field=field)
    return value


def _positive(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(f"{value!r} is not a positive whole number", field=field)
    return value


def _choice(value: Any, allowed: tuple[ClassMode, ...], field: str) -> ClassMode:
    if value not in allowed:
        raise PolicyError(f"{value!r} is not one of {', '.join(allowed)}", field=field)
    return ClassMode(value)


def _classes(value: Any, regime: ClassMode) -> dict[str, ClassMode]:
    if not isinstance(value, Mapping) or not value:
        raise PolicyError("must map at least one class code to its settings", field="classes")
    classes = {}
    for code, spec in value.items():
        if not isinstance(code, str) or not code or code == "*":
            raise PolicyError(f"{code!r} is not a class code", field="classes")
        spec = {} if spec is None else spec
        if not isinstance(spec, Mapping):
            raise PolicyError("must be a mapping such as {mode: opt_in}", field=f"classes.{code}")
        mode = spec.get("mode")
        # A class given as {} follows the regime; an explicit mode overrides it (FORMATS.md).
        classes[code] = regime if mode is None else _choice(mode, tuple(ClassMode), f"classes.{code}.mode")
    return classes


def _reauthorization(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise PolicyError("must map channels to days", field="reauthorization_days")
    for channel, days in value.items():
        if channel not in CHANNELS:
            raise PolicyError(f"{channel!r} is not a channel", field="reauthorization_days")
        _positive(days, f"reauthorization_days.{channel}")
    return dict(value)


def _clock(value: Any, field: str) -> int:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise PolicyError(f"{value!r} is not a time of day HH:MM", field=field)
    return int(match[1]) * 60 + int(match[2])


def _quiet_hours(value: Any) -> QuietWindow | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PolicyError("must be null or {start: HH:MM, end: HH:MM}", field="quiet_hours")
    start = _clock(value.get("start"), "quiet_hours.start")
    end = _clock(value.get("end"), "quiet_hours.end")
    # start == end is an empty window (no quiet hours), not a whole day of silence.
    return None if start == end else QuietWindow(start, end)


def _caps(value: Any) -> tuple[FrequencyCap, ...]:
    if not isinstance(value, list | tuple):
        raise PolicyError("must be a list", field="frequency_caps")
    caps: dict[str, FrequencyCap] = {}
    for index, item in enumerate(value):
        field = f"frequency_caps[{index}]"
        if not isinstance(item, Mapping):
            raise PolicyError("must be {channel, max, per_hours}", field=field)
        channel = item.get("channel")
        if channel not in CHANNELS:
            raise PolicyError(f"{channel!r} is not a channel", field=f"{field}.channel")
        if channel in caps:
            raise PolicyError(f"more than one cap for channel {channel!r}", field=f"{field}.channel")
        caps[channel] = FrequencyCap(
            channel, _positive(item.get("max"), f"{field}.max"), _positive(item.get("per_hours"), f"{field}.per_hours")
        )
    return tuple(caps.values())
