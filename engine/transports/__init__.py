"""Transports: hand rendered messages to an SMTP relay or to Twilio's Messages API.

The pipeline sees the interfaces of `base.py` and the error hierarchy of `errors.py`;
`SmtpPool` and `TwilioSms` are the implementations.
"""

from engine.transports.base import EmailTransport, SmsTransport
from engine.transports.errors import (
    PermanentError,
    RelayCertificateError,
    RelayPolicyError,
    RelayTlsError,
    SenderRejected,
    StopCause,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportError,
    TransportTimeoutError,
)
from engine.transports.sms import TwilioSms
from engine.transports.smtp import SmtpPool, tls_context_for

__all__ = [
    "EmailTransport",
    "PermanentError",
    "RelayCertificateError",
    "RelayPolicyError",
    "RelayTlsError",
    "SenderRejected",
    "SmsTransport",
    "SmtpPool",
    "StopCause",
    "TransientError",
    "TransportAuthError",
    "TransportConnectionError",
    "TransportError",
    "TransportTimeoutError",
    "TwilioSms",
    "tls_context_for",
]
