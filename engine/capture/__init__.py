"""Built-in capture servers: an SMTP sink and a Twilio-compatible Messages API on loopback.

Product features, like a dev mail catcher: the demo, the tests and a new user see the real
SMTP conversation and the real Twilio API traffic of a campaign with no relay and no
account. Both append what they accept to `DIR/messages.jsonl` (FORMATS.md, "Sending").
"""

from engine.capture.sms import SmsCaptureServer
from engine.capture.smtp import SmtpCaptureServer
from engine.capture.store import CaptureStore, read_messages

__all__ = ["CaptureStore", "SmsCaptureServer", "SmtpCaptureServer", "read_messages"]
