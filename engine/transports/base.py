"""The two transport interfaces the send pipeline depends on.

Implementations: `SmtpPool` (engine/transports/smtp.py) and `TwilioSms`
(engine/transports/sms.py). Both raise only `engine.transports.errors` for delivery
failures. A fake for tests must implement these, not patch the real ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable


class EmailTransport(ABC):
    """Hands pre-rendered RFC 5322 messages to a relay."""

    @abstractmethod
    async def send_raw(self, sender: str, recipients: list[str], data: bytes, guard: Callable[[], bool] | None = None,
                       *, crlf: bool = False) -> str:
        """Send `data` (headers and body, CRLF or LF line endings; `crlf`: known to be CRLF
        throughout) to `recipients`.

        Returns the relay's acceptance text (its queue id, when it gives one).
        Raises TransientError or PermanentError.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""


class SmsTransport(ABC):
    """Hands text messages to an SMS provider."""

    @abstractmethod
    async def send(self, to: str, from_: str, body: str, status_callback: str | None = None,
                   guard: Callable[[], bool] | None = None) -> tuple[str, int | None]:
        """Send one text; returns (provider message id, billed segments or None).

        Raises TransientError or PermanentError.
        """

    @abstractmethod
    async def find_sent(self, to: str, from_: str, body: str, since_us: int) -> str | None:
        """The provider id of a message with this to/from/body created at or after
        `since_us` (microseconds since the epoch), or None: reconciles a send that was in
        doubt after a crash."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
