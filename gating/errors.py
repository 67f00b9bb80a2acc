"""Errors raised by the gating core.

What it is for: telling a caller that a tenant policy or a message makes no sense, so
nothing is gated on a policy nobody wrote. What it must never do: carry IO concerns
(files, lines, HTTP codes); the shell maps these to its own input errors.

    ValueError
     └── PolicyError               a policy or message that cannot be gated on
          └── UnknownClassError    the message names a class the policy does not define
"""

from __future__ import annotations


class PolicyError(ValueError):
    """A tenant policy, or a message against it, that makes no sense.

    `field` is the dotted key of the offending value (`quiet_hours.start`,
    `classes.marketing.mode`, `message.channel`) when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class UnknownClassError(PolicyError):
    """The message's class is not one of the tenant's communication classes."""

    def __init__(self, class_code: str, known: tuple[str, ...]) -> None:
        super().__init__(
            f"class {class_code!r} is not in the tenant policy (known: {', '.join(known)})",
            field="message.class_code",
        )
        self.class_code = class_code
