"""tenant.yaml `senders`: the addresses a tenant sends as and receives at (docs/inbound-mail.md).

```yaml
senders:
  domains: [acme-motors.example]
  bulk: {email: offers@acme-motors.example, name: Acme Motors}
  reply_to: sales@acme-motors.example
  return_path: bounces@acme-motors.example
  unsubscribe: unsubscribe@acme-motors.example
  people:
    jo: {email: jo@acme-motors.example, name: Jo Smith, phone: "+15550100001"}
```

Every address must be in one of `domains` (exactly that domain, not a subdomain): a relay
refuses, and a mailbox provider distrusts, mail whose From is a domain the sender does not
control, and a bounce or unsubscribe address outside them would never reach us. Problems
are raised at the field they belong to (`senders.people.jo.email`), so `tenant apply` names
the line.

`senders_of(policy)` is the one reader of the stored section: the rest of the code takes
the typed `Senders` it returns, whatever shape the stored policy has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns.yaml_source import LocatedValueError

__all__ = ["Identity", "Senders", "sender_problem", "senders_of"]

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")
# A plain ASCII local part: these addresses go into SMTP envelopes and headers as they are.
_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*/=?^_`{|}~.-]+(?:\+[A-Za-z0-9!#$%&'*/=?^_`{|}~.-]+)?@[^@\s]+$")
_PERSON = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address (ASCII local@domain)")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identity(_Strict):
    """Who a message is from: an address, a display name, and for texts a number."""

    email: str
    name: str | None = None
    phone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _address(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("a display name cannot contain line breaks or control characters")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValueError(f"{value!r} is not a phone number in E.164 form (+15550100001)") from None
        if not phonenumbers.is_possible_number(number):
            raise ValueError(f"{value!r} is not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Senders(_Strict):
    """The tenant's sender identities and inbound addresses, validated as a whole."""

    domains: list[str] = Field(min_length=1)
    bulk: Identity | None = None
    reply_to: str | None = None
    # Default: bounces@ and unsubscribe@ the first domain.
    return_path: str | None = None
    unsubscribe: str | None = None
    people: dict[str, Identity] = Field(default_factory=dict)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        domains = []
        for domain in value:
            lowered = str(domain).strip().lower()
            if not _DOMAIN.match(lowered):
                raise ValueError(f"{domain!r} is not a domain name")
            domains.append(lowered)
        return domains

    @field_validator("reply_to", "return_path", "unsubscribe")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("people")
    @classmethod
    def _people(cls, value: dict[str, Identity]) -> dict[str, Identity]:
        for code in value:
            if not _PERSON.match(code):
                raise ValueError(f"person {code!r}: use lower-case letters, digits, _ or - (it is what --from names)")
        return value

    @model_validator(mode="after")
    def _in_domains(self) -> Senders:
        allowed = set(self.domains)
        shown = ", ".join(self.domains)
        fields: list[tuple[tuple[str | int, ...], str | None]] = [
            (("bulk", "email"), self.bulk.email if self.bulk else None),
            (("reply_to",), self.reply_to),
            (("return_path",), self.return_path),
            (("unsubscribe",), self.unsubscribe),
            *((("people", code, "email"), person.email) for code, person in self.people.items()),
        ]
        for location, address in fields:
            if address is not None and _domain_of(address) not in allowed:
                raise LocatedValueError(location, f"{address!r} is not in the tenant's domains ({shown})")
        # VERP and unsubscribe tokens are added after a `+`: the base addresses carry none.
        for location, address in ((("return_path",), self.return_path), (("unsubscribe",), self.unsubscribe)):
            if address is not None and "+" in address.rpartition("@")[0]:
                raise LocatedValueError(location, f"{address!r}: no '+' here, Consentry adds '+<token>' itself")
        if self.inbound_return_path == self.inbound_unsubscribe:
            raise LocatedValueError(("unsubscribe",), "the unsubscribe address must differ from return_path")
        return self

    @property
    def inbound_return_path(self) -> str:
        """The envelope sender's base address (each message adds `+<token>`)."""
        return (self.return_path or f"bounces@{self.domains[0]}").lower()

    @property
    def inbound_unsubscribe(self) -> str:
        """The List-Unsubscribe mailto address."""
        return (self.unsubscribe or f"unsubscribe@{self.domains[0]}").lower()

    def owns(self, address: str) -> bool:
        """Is `address` in one of the tenant's domains?"""
        return _domain_of(address) in self.domains


def senders_of(policy: Mapping[str, Any]) -> Senders | None:
    """The tenant's `senders` section, typed; None when the tenant has none (the campaign's
    sender and addresses derived from its domain are used then)."""
    raw = policy.get("senders")
    if not raw:
        return None
    return Senders.model_validate(raw)


def sender_problem(email: str | None, senders: Senders | None) -> str | None:
    """Why an email campaign cannot send as `email` (None: it can). Without `senders`, a
    campaign must name its sender; with them, its sender must be in their domains, and a
    campaign without one sends as `senders.bulk`."""
    if senders is None:
        return None if email else "an email campaign needs sender.email (or the tenant's senders.bulk)"
    if email is None:
        return None if senders.bulk else "an email campaign needs sender.email: the tenant has no senders.bulk"
    if not senders.owns(email):
        return f"{email!r} is not in the tenant's sender domains ({', '.join(senders.domains)})"
    return None
