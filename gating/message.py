"""The message being gated: bulk or individual, on which channel, of which class, for whom.

What it is for: the half of a decision's input that is the same for every recipient of a
campaign (the other half is the recipient's `ConsentState`). What it must never do: carry
content, recipients or transport details; gating does not need them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gating.errors import PolicyError

BULK = "bulk"
INDIVIDUAL = "individual"
KINDS = (BULK, INDIVIDUAL)

CHANNELS = ("email", "sms", "voice", "letter", "social")
PARTIES = ("first", "third")

# Quiet hours protect people from their phone ringing or buzzing at night; an email, a
# letter or a social post waits in an inbox and is never deferred.
PHONE_CHANNELS = frozenset({"sms", "voice"})

# Which of a contact's addresses a channel uses (docs/architecture.md: one per kind).
ADDRESS_KIND = {"email": "email", "sms": "phone", "voice": "phone"}


@dataclass(frozen=True, slots=True)
class Message:
    """What is being sent: `kind` bulk (a campaign) or individual (a 1:1 reply).

    `is_opt_in_request` marks the one text allowed to a lead who has not yet said YES
    (rule 4); every other rule still applies to it.
    """

    kind: str
    channel: str
    class_code: str
    party: str = "first"
    is_opt_in_request: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("kind", self.kind, KINDS),
            ("channel", self.channel, CHANNELS),
            ("party", self.party, PARTIES),
        ):
            if value not in allowed:
                raise PolicyError(f"{value!r} is not one of {', '.join(allowed)}", field=f"message.{name}")
        if not isinstance(self.class_code, str) or not self.class_code or self.class_code == "*":
            raise PolicyError(f"{self.class_code!r} is not a class code", field="message.class_code")
        if not isinstance(self.is_opt_in_request, bool):
            raise PolicyError("must be true or false", field="message.is_opt_in_request")

    @property
    def is_bulk(self) -> bool:
        return self.kind == BULK
