"""Standard Webhooks signatures (https://www.standardwebhooks.com), with the reference
library `standardwebhooks`.

Each POST carries `webhook-id` (the event id: the same on every retry, for the receiver to
de-duplicate), `webhook-timestamp` (integer seconds since the epoch, from the dispatcher's
clock, when the attempt is made) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}` keyed with the base64-decoded part of the endpoint's `whsec_`
secret. Receivers recompute it and refuse a timestamp more than five minutes off their
clock, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import secrets

from standardwebhooks import Webhook

from engine.timeutil import from_us

__all__ = ["SECRET_PREFIX", "new_secret", "signed_headers"]

SECRET_PREFIX = "whsec_"
# 24 random bytes: 192 bits of key, the size the Standard Webhooks examples use (Svix's too).
_SECRET_BYTES = 24


def new_secret() -> str:
    """A fresh signing secret, `whsec_` and base64 of random bytes, as receivers expect it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def signed_headers(secret: str, message_id: str, now_us: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt at `now_us`."""
    moment = from_us(now_us - now_us % 1_000_000)
    signature = Webhook(secret).sign(message_id, moment, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(now_us // 1_000_000),
        "webhook-signature": signature,
    }
