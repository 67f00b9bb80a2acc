"""`tenant.yaml`: the tenant policy file (FORMATS.md), validated key by key.

Every key is checked (unknown keys are errors, so a typo never silently loosens a
policy); the result is the plain mapping `gating.TenantPolicy.from_mapping` reads, with
every default filled in, which is what gets stored as a policy version.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from zoneinfo import available_timezones

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from campaigns.errors import InputErrors
from campaigns.senders import Senders
from campaigns.yaml_source import YamlSource, load_yaml, parse_yaml, pydantic_errors
from gating.policy import (
    DEFAULT_CLASSES,
    DEFAULT_OPT_IN_MESSAGE,
    DEFAULT_OPT_OUT_FOOTER,
    DEFAULT_REVIEW_PERIOD_DAYS,
)

Channel = Literal["email", "sms", "voice", "letter", "social"]
Mode = Literal["opt_in", "opt_out", "exempt"]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassSpec(_Strict):
    mode: Mode | None = None  # None: follows the regime


class SmsSpec(_Strict):
    opt_in_required: bool = False
    opt_in_excluded_sources: list[str] = Field(default_factory=list)
    opt_in_message: str = DEFAULT_OPT_IN_MESSAGE
    opt_out_footer: str = DEFAULT_OPT_OUT_FOOTER


class ReviewSpec(_Strict):
    period_days: int = Field(default=DEFAULT_REVIEW_PERIOD_DAYS, gt=0)
    enforce: bool = False


class QuietHours(_Strict):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not isinstance(value, str) or not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time of day HH:MM (00:00-23:59)")
        return value


class FrequencyCap(_Strict):
    channel: Channel
    max: int = Field(ge=1)
    per_hours: int = Field(gt=0)


def _default_classes() -> dict[str, ClassSpec]:
    # gating's defaults: the consent classes follow the regime, transactional is exempt.
    return {code: ClassSpec.model_validate(spec) for code, spec in DEFAULT_CLASSES.items()}


class DkimKey(_Strict):
    """Sign mail from `domain` (and its subdomains) as `selector._domainkey.domain`."""

    domain: str = Field(pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", max_length=253)
    selector: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
    # A PEM private key (RSA, 1024 bits or more) that every sending process can read. A
    # relative path is resolved against tenant.yaml's folder by `tenant apply`.
    key_file: str = Field(min_length=1)


class TenantFile(_Strict):
    tenant: str = Field(pattern=r"^[a-z0-9-]+$", max_length=64)
    name: str = Field(min_length=1)
    regime: Literal["opt_out", "opt_in"] = "opt_out"
    country: str = "US"
    timezone: str = "UTC"
    postal_address: str = ""
    classes: dict[str, ClassSpec] = Field(default_factory=_default_classes)
    sms: SmsSpec = Field(default_factory=SmsSpec)
    reauthorization_days: dict[Channel, int] = Field(default_factory=dict)
    review: ReviewSpec = Field(default_factory=ReviewSpec)
    quiet_hours: QuietHours | None = None
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    dkim: list[DkimKey] = Field(default_factory=list)
    # Optional (campaigns/senders.py): without it a campaign names its own sender.
    senders: Senders | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 country code")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError(f"{value!r} is not an IANA time zone")
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: dict[str, ClassSpec]) -> dict[str, ClassSpec]:
        for code in value:
            if not _CODE.match(code):
                raise ValueError(f"class code {code!r} must be lower-case letters, digits, _ or -")
        if not value:
            raise ValueError("at least one communication class is required")
        return value

    @field_validator("frequency_caps")
    @classmethod
    def _one_cap_per_channel(cls, value: list[FrequencyCap]) -> list[FrequencyCap]:
        _once_each((cap.channel for cap in value), "more than one cap for channel")
        return value

    @field_validator("dkim")
    @classmethod
    def _one_key_per_domain(cls, value: list[DkimKey]) -> list[DkimKey]:
        _once_each((key.domain for key in value), "more than one key for domain")
        return value

    @field_validator("reauthorization_days")
    @classmethod
    def _reauthorization(cls, value: dict[str, int]) -> dict[str, int]:
        for channel, days in value.items():
            if days <= 0:
                raise ValueError(f"{channel}: days must be positive")
        return value


def _once_each(values: Iterable[str], problem: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{problem} {value!r}")
        seen.add(value)


def is_timezone(name: str) -> bool:
    """Is `name` an IANA time zone key (`America/Los_Angeles`, `UTC`)?

    Checked against the zone database's list of keys, not by opening a file: `ZoneInfo`
    given a folder of the database (`America`, `Etc`) or an over-long name raises OSError
    instead of ZoneInfoNotFoundError, which would crash an import rather than report the
    cell.
    """
    return len(name) <= _LONGEST_ZONE and name in _zone_keys()


@functools.cache
def _zone_keys() -> frozenset[str]:
    return frozenset(available_timezones())


_LONGEST_ZONE = 64  # the longest IANA key is 32 characters; anything far longer is not one


def load_tenant_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Validate a tenant.yaml; returns (policy mapping with defaults, source text).

    DKIM key files are resolved against the file's folder and must hold a private key
    DKIM can sign with: a tenant whose key is missing finds out now, not mid-campaign.
    """
    source = load_yaml(path)
    policy = validate_tenant(source)
    errors = []
    for index, key in enumerate(policy["dkim"]):
        key["key_file"] = str((Path(path).parent / key["key_file"]).resolve())
        problem = dkim_key_problem(key["key_file"])
        if problem is not None:
            errors.append(source.error(("dkim", index, "key_file"), problem))
    if errors:
        raise InputErrors(errors)
    return policy, Path(path).read_text(encoding="utf-8")


def dkim_key_problem(key_file: str) -> str | None:
    """Why this file holds no private key DKIM can sign with, or None when it does."""
    import dkim.crypto

    try:
        pem = Path(key_file).read_bytes()
    except OSError as exc:
        return f"cannot read the DKIM key {key_file}: {exc.strerror or exc}"
    try:
        key = dkim.crypto.parse_pem_private_key(pem)
    except (dkim.crypto.UnparsableKeyError, ValueError) as exc:
        return f"{key_file} is not a PEM RSA private key ({exc})"
    if key["modulus"].bit_length() < 1024:
        return f"{key_file}: a {key['modulus'].bit_length()}-bit key is too short (RFC 8301: at least 1024, use 2048)"
    return None


def parse_tenant_text(text: str, shown: str = "tenant.yaml") -> dict[str, Any]:
    return validate_tenant(parse_yaml(text, shown))


def validate_tenant(source: YamlSource) -> dict[str, Any]:
    try:
        model = TenantFile.model_validate(source.data)
    except ValidationError as exc:
        raise InputErrors(pydantic_errors(source, exc)) from None
    policy = model.model_dump(mode="json")
    if policy["senders"] is None:
        # Absent, not null: a tenant file without `senders` stores the policy it stored
        # before the section existed, so re-applying it is still "unchanged".
        del policy["senders"]
    return policy
