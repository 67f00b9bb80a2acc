"""The one error hierarchy of the transports; retry logic checks the class, never the text.

    ConsentryError
     └── TransportError                 code, message
          ├── TransientError            retry later, with backoff
          │    ├── TransportConnectionError   (also ConnectionError) refused, reset, closed
          │    └── TransportTimeoutError      (also TimeoutError) no answer in time: IN DOUBT
          └── PermanentError            do not retry; block_cause says what to record
               ├── SenderRejected       the relay or Twilio refuses our sender / account
               └── TransportAuthError   the credentials are wrong

`code` is the SMTP reply code (550, 451) or the Twilio error code (21610, 20503; the HTTP
status is in `status`, None for SMTP), or None when there was no reply at all. `message` is the server's
text. `PermanentError.block_cause` is the suppression to record for the address:
`hard_bounce`, `carrier_unsubscribed`, `invalid_number`, `not_mobile`, or None when the
failure says nothing about the address (content refused, policy, configuration).

`SenderRejected` and `TransportAuthError` fail every message alike: a caller may prefer to
stop the campaign rather than mark each recipient failed.

A timeout after the message was handed over is in doubt (it may have been delivered): the
caller records the send as in doubt and reconciles (Twilio: `find_sent`) or resends with
the same Message-ID (SMTP), never blindly twice.
"""

from __future__ import annotations

from engine.errors import ConsentryError

BLOCK_CAUSES = frozenset({"hard_bounce", "carrier_unsubscribed", "invalid_number", "not_mobile"})


class DispatchCancelled(ConsentryError, ConnectionAbortedError):
    """The caller's guard withdrew the message before it was handed over: nothing was sent.

    Also a ConnectionAbortedError: raised from a socket write (engine/transports/guarded.py),
    it aborts that connection, and code that handles a dropped connection handles it too.
    """


class TransportError(ConsentryError):
    """A message could not be handed to the relay or the SMS provider."""

    def __init__(self, message: str, code: int | None = None, *, status: int | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status  # the HTTP status, for the Twilio API; None for SMTP
        super().__init__(message, code)

    def __str__(self) -> str:
        return f"{self.code} {self.message}" if self.code is not None else self.message


class TransientError(TransportError):
    """Worth retrying later: SMTP 4xx, Twilio 429/5xx, network failures, timeouts."""


class TransportConnectionError(TransientError, ConnectionError):
    """The server could not be reached, or dropped the connection."""


class TransportTimeoutError(TransientError, TimeoutError):
    """No answer in time; if it happened after the message was sent, delivery is in doubt."""


class PermanentError(TransportError):
    """Retrying will not help; `block_cause` (or None) is the suppression to record."""

    def __init__(self, message: str, code: int | None = None, block_cause: str | None = None,
                 *, status: int | None = None) -> None:
        if block_cause is not None and block_cause not in BLOCK_CAUSES:
            raise ValueError(f"unknown block cause {block_cause!r}")
        super().__init__(message, code, status=status)
        self.block_cause = block_cause


class SenderRejected(PermanentError):
    """The sender (MAIL FROM, the From number, the account) is refused: no message can go."""


class TransportAuthError(PermanentError):
    """The relay or provider rejected our credentials."""
