"""The one error hierarchy of the transports; retry logic checks the class, never the text.

    ConsentryError
     └── TransportError                 code, message, context; stop_cause
          ├── TransientError            retry later, with backoff
          │    ├── TransportConnectionError   (also ConnectionError) refused, reset, closed
          │    └── TransportTimeoutError      (also TimeoutError) no answer in time: IN DOUBT
          └── PermanentError            do not retry; block_cause says what to record;
               │                        policy_status the 5.7.x of a policy refusal
               ├── SenderRejected       the relay or Twilio refuses our sender / account    STOP
               ├── TransportAuthError   the credentials are wrong (or cannot be offered)   STOP
               ├── RelayCertificateError  the relay's certificate is not trusted            STOP
               ├── RelayTlsError        TLS is required and the relay does not offer it     STOP
               └── RelayPolicyError     many recipients in a row refused by the same 5.7.x  STOP
                                        (raised by the send pipeline, not by a transport)

`code` is the SMTP reply code (550, 451) or the Twilio error code (21610, 20503; the HTTP
status is in `status`, None for SMTP), or None when there was no reply at all. `message` is the server's
text. `PermanentError.block_cause` is the suppression to record for the address:
`hard_bounce`, `carrier_unsubscribed`, `invalid_number`, `not_mobile`, or None when the
failure says nothing about the address (content refused, policy, configuration).

`stop_cause` (a `StopCause`, or None) marks the failures that every message would share: they
say nothing about the recipient, so the campaign stops and its recipients stay pending for
`resume` once the relay or our settings are fixed, rather than being marked failed. `context`
is the plain-words lead of the message ("relay refused credentials for user mailer"), put
first when the error prints.

A timeout after the message was handed over is in doubt (it may have been delivered): the
caller records the send as in doubt and reconciles (Twilio: `find_sent`) or resends with
the same Message-ID (SMTP), never blindly twice.
"""

from __future__ import annotations

import re
from enum import StrEnum

from engine.errors import ConsentryError

BLOCK_CAUSES = frozenset({"hard_bounce", "carrier_unsubscribed", "invalid_number", "not_mobile"})


class DispatchCancelled(ConsentryError, ConnectionAbortedError):
    """The caller's guard withdrew the message before it was handed over: nothing was sent.

    Also a ConnectionAbortedError: raised from a socket write (engine/transports/guarded.py),
    it aborts that connection, and code that handles a dropped connection handles it too.
    """


_POLICY_STATUS = re.compile(r"^\s*(5\.7\.\d{1,3})\b")


class StopCause(StrEnum):
    """Why a failure stops the whole campaign instead of failing one recipient."""

    CERTIFICATE = "certificate"  # the relay's certificate is not trusted (or not for its name)
    TLS = "tls"  # TLS is required and the relay does not offer it
    CREDENTIALS = "credentials"  # AUTH refused, or not offered to us
    SENDER = "sender"  # the envelope sender, the account or the From number is refused
    POLICY = "policy"  # the relay refuses recipients by policy, the same 5.7.x many in a row


class TransportError(ConsentryError):
    """A message could not be handed to the relay or the SMS provider."""

    stop_cause: StopCause | None = None

    def __init__(self, message: str, code: int | None = None, *, status: int | None = None,
                 context: str | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status  # the HTTP status, for the Twilio API; None for SMTP
        self.context = context
        super().__init__(message, code)

    def __str__(self) -> str:
        reply = f"{self.code} {self.message}" if self.code is not None else self.message
        return f"{self.context}: {reply}" if self.context else reply


class TransientError(TransportError):
    """Worth retrying later: SMTP 4xx, Twilio 429/5xx, network failures, timeouts."""


class TransportConnectionError(TransientError, ConnectionError):
    """The server could not be reached, or dropped the connection."""


class TransportTimeoutError(TransientError, TimeoutError):
    """No answer in time; if it happened after the message was sent, delivery is in doubt."""


class PermanentError(TransportError):
    """Retrying will not help; `block_cause` (or None) is the suppression to record."""

    def __init__(self, message: str, code: int | None = None, block_cause: str | None = None,
                 *, status: int | None = None, context: str | None = None) -> None:
        if block_cause is not None and block_cause not in BLOCK_CAUSES:
            raise ValueError(f"unknown block cause {block_cause!r}")
        super().__init__(message, code, status=status, context=context)
        self.block_cause = block_cause

    @property
    def policy_status(self) -> str | None:
        """The enhanced status (RFC 3463) of a refusal by security or policy, `5.7.x`, from
        an SMTP reply; None otherwise. Many recipients in a row refused with the same one
        are the relay refusing us, not them (engine/send/breaker.py)."""
        if self.status is not None or self.code is None or self.code < 500:
            return None
        match = _POLICY_STATUS.match(self.message)
        return match.group(1) if match else None


class SenderRejected(PermanentError):
    """The sender (MAIL FROM, the From number, the account) is refused: no message can go."""

    stop_cause = StopCause.SENDER


class TransportAuthError(PermanentError):
    """The relay or provider rejected our credentials, or offers no way to present them."""

    stop_cause = StopCause.CREDENTIALS


class RelayCertificateError(PermanentError):
    """The relay's TLS certificate does not verify against the trusted CAs (or its name)."""

    stop_cause = StopCause.CERTIFICATE


class RelayTlsError(PermanentError):
    """TLS is required (STARTTLS, smtps://) and the relay cannot provide it."""

    stop_cause = StopCause.TLS


class RelayPolicyError(PermanentError):
    """The relay refused many recipients in a row with the same 5.7.x: it refuses us."""

    stop_cause = StopCause.POLICY
