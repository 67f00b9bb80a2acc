"""`campaign.yaml`: the campaign definition (FORMATS.md), validated with located errors.

Structure is checked here, on its own. What needs the database or the file system (does the
tenant exist, is the class in its policy, is the template there) is checked by
`validate_against_policy` and by the engine, which reports through `CampaignDefinition.error`
so every message still names the file, the line and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from campaigns.errors import InputError, InputErrors
from campaigns.senders import Senders, sender_problem
from campaigns.yaml_source import LocatedValueError as _Located
from campaigns.yaml_source import YamlSource, load_yaml, located, parse_yaml
from gating import TenantPolicy

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Strict):
    """Filters, all optional and ANDed; none selects every contact of the tenant."""

    lead_source: list[str] | None = None
    external_id: list[str] | None = None
    country: list[str] | None = None
    region: list[str] | None = None

    @field_validator("lead_source", "external_id", "country", "region", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        # `lead_source: Website` reads as a one-element list.
        return [value] if isinstance(value, str) else value

    def is_empty(self) -> bool:
        return not (self.lead_source or self.external_id or self.country or self.region)


class Sender(_Strict):
    email: str | None = None
    name: str | None = None
    phone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("a sender name cannot contain a line break")
        return value


class Rate(_Strict):
    per_second: float = Field(gt=0)


class CampaignModel(_Strict):
    campaign: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)
    tenant: str = Field(pattern=r"^[a-z0-9-]+$")
    kind: Literal["bulk", "individual"] = "bulk"
    channel: Literal["email", "sms"]
    class_: str = Field(alias="class")
    party: Literal["first", "third"] = "first"
    audience: Audience = Field(default_factory=Audience)
    template: str = Field(min_length=1)
    subject: str | None = None
    # Optional for email when the tenant names its bulk sender (tenant.yaml `senders.bulk`):
    # checked against the policy by `validate_against_policy`.
    sender: Sender = Field(default_factory=lambda: Sender())
    rate: Rate | None = None
    # Optional: the agent named in SMS opt-in requests ("this is {{ agent_name }}").
    agent_name: str | None = None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("a subject cannot contain a line break")
        return value

    @model_validator(mode="after")
    def _channel_fits(self) -> CampaignModel:
        if self.channel == "email":
            if not self.subject:
                raise _Located(("subject",), "an email campaign needs a subject")
            if self.sender.phone:
                raise _Located(("sender", "phone"), "an email campaign sends from an email address, not a phone")
        else:
            if not self.sender.phone:
                raise _Located(("sender",), "an SMS campaign needs sender.phone")
            if self.sender.email:
                raise _Located(("sender", "email"), "an SMS campaign sends from a phone number, not an email address")
            if self.subject:
                raise _Located(("subject",), "an SMS has no subject")
        return self


@dataclass(frozen=True, slots=True)
class CampaignDefinition:
    """A validated campaign definition with where it came from."""

    model: CampaignModel
    source: YamlSource
    directory: Path

    @property
    def code(self) -> str:
        return self.model.campaign

    @property
    def tenant(self) -> str:
        return self.model.tenant

    @property
    def channel(self) -> str:
        return self.model.channel

    @property
    def class_code(self) -> str:
        return self.model.class_

    def error(self, field: str, message: str) -> InputError:
        return self.source.error(tuple(field.split(".")), message)

    def as_dict(self) -> dict[str, Any]:
        return self.model.model_dump(mode="json", by_alias=True, exclude_none=True)


def load_campaign(path: str | Path) -> CampaignDefinition:
    source = load_yaml(path)
    return _validate(source, Path(path).resolve().parent)


def parse_campaign(data_or_text: str | dict[str, Any], shown: str = "campaign", directory: Path | None = None) -> CampaignDefinition:
    """From YAML/JSON text or an already-parsed mapping (the HTTP API)."""
    if isinstance(data_or_text, str):
        source = parse_yaml(data_or_text, shown)
    else:
        source = YamlSource(shown, data_or_text, None)
    return _validate(source, directory or Path.cwd())


def _validate(source: YamlSource, directory: Path) -> CampaignDefinition:
    try:
        model = CampaignModel.model_validate(source.data)
    except ValidationError as exc:
        raise InputErrors(located(source, exc.errors())) from None
    return CampaignDefinition(model, source, directory)


def validate_against_policy(definition: CampaignDefinition, policy: TenantPolicy, senders: Senders | None) -> None:
    """The class must exist in the tenant's policy (FORMATS.md: exit 2 otherwise), and an
    email campaign's sender must be one the tenant sends as (tenant.yaml `senders`)."""
    if definition.class_code not in policy.classes:
        known = ", ".join(sorted(policy.classes))
        raise InputErrors([definition.error("class", f"class {definition.class_code!r} is not in tenant {definition.tenant!r}'s policy (known: {known})")])
    if definition.channel == "email":
        problem = sender_problem(definition.model.sender.email, senders)
        if problem is not None:
            field = "sender.email" if definition.model.sender.email else "sender"
            raise InputErrors([definition.error(field, problem)])
