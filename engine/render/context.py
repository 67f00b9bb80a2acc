"""The variables a template sees for one recipient.

Every template can use the STANDARD_VARIABLES. Contacts often lack a name, so a standard
field that is missing or None renders as "" (templates write `{{ first_name or "there" }}`);
any other name is an error, at compile time when the campaign declares its variables and
otherwise at render time.

`CampaignContext` holds what is constant for a campaign and signs each recipient's
unsubscribe token; `recipient_context` is the same without tokens (previews, individual
messages, tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.render.tokens import preferences_url, sign_token, unsubscribe_url

STANDARD_VARIABLES: frozenset[str] = frozenset(
    {
        "first_name",
        "last_name",
        "external_id",
        "email",
        "phone",
        "tenant_name",
        "postal_address",
        "unsubscribe_url",
        "preferences_url",
        "unsubscribe_token",
        "sender_name",
        "agent_name",
    }
)
# The names that need a signed token (CampaignContext.for_recipient's `tokens`).
UNSUBSCRIBE_VARIABLES: frozenset[str] = frozenset(
    {"unsubscribe_token", "unsubscribe_url", "preferences_url"})
_EMPTY = dict.fromkeys(STANDARD_VARIABLES, "")


def recipient_context(
    extra: Mapping[str, object] | None = None, /, **values: object
) -> dict[str, object]:
    """A template context: the standard names (missing or None → ""), then `extra`'s.

    `extra` may add names but not replace a standard one (that would let a contact field
    override, say, the unsubscribe link).
    """
    context: dict[str, object] = dict(_EMPTY)
    for name, value in values.items():
        if name not in STANDARD_VARIABLES:
            raise ValueError(f"{name!r} is not a standard variable; pass it in `extra`")
        if value is not None:
            context[name] = value
    if extra:
        _add_extra(context, extra)
    return context


def _add_extra(context: dict[str, object], extra: Mapping[str, object]) -> None:
    clash = STANDARD_VARIABLES.intersection(extra)
    if clash:
        raise ValueError(f"extra variables may not replace standard ones: {sorted(clash)}")
    context.update(extra)


@dataclass(frozen=True, slots=True)
class CampaignContext:
    """What is the same for every recipient of a campaign; `for_recipient` adds the rest."""

    tenant_id: int
    campaign_id: int | None
    channel: str
    secret: bytes  # the unsubscribe-token key
    public_url: str  # base of the unsubscribe and preference links
    tenant_name: str = ""
    postal_address: str = ""
    sender_name: str = ""
    agent_name: str = ""
    # The standard names that are the same for every recipient (tokens and links empty),
    # filled once: `for_recipient` copies it and sets the recipient's own.
    _base: dict[str, object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", recipient_context(
            tenant_name=self.tenant_name, postal_address=self.postal_address,
            sender_name=self.sender_name, agent_name=self.agent_name))

    def for_recipient(
        self,
        contact_id: int,
        *,
        external_id: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        extra: Mapping[str, object] | None = None,
        tokens: bool = True,
    ) -> dict[str, object]:
        """The context of one recipient, with a freshly signed unsubscribe token.

        `tokens=False` leaves the token and both links empty, for templates that read none
        of them (`UNSUBSCRIBE_VARIABLES`; most SMS templates): signing is a third of the cost
        of a context, paid per message.
        """
        # The campaign's names are in `_base` already: copied, not checked and set one by
        # one as `recipient_context` does (the same dict: tests/render/test_context.py).
        context = self._base.copy()
        if first_name is not None:
            context["first_name"] = first_name
        if last_name is not None:
            context["last_name"] = last_name
        if external_id is not None:
            context["external_id"] = external_id
        if email is not None:
            context["email"] = email
        if phone is not None:
            context["phone"] = phone
        if tokens:
            token = sign_token(self.secret, self.tenant_id, self.campaign_id, contact_id, self.channel)
            context["unsubscribe_token"] = token
            context["unsubscribe_url"] = unsubscribe_url(self.public_url, token)
            context["preferences_url"] = preferences_url(self.public_url, token)
        if extra:
            _add_extra(context, extra)
        return context
