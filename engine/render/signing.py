"""DKIM signing (RFC 6376) of rendered messages, with dkimpy (the optional `dkim` extra).

The signature covers the headers a receiver judges the message by, and RFC 8058 section 4
requires it to cover List-Unsubscribe and List-Unsubscribe-Post, so a one-click link
cannot be swapped in transit. From and the two List-Unsubscribe headers are signed once
more than they occur ("oversigning"): a header added later, even to an individual message
that has none, then breaks the signature instead of riding on it.

Canonicalisation is relaxed/relaxed: relays that rewrap headers or touch trailing
whitespace do not break it.
"""

from __future__ import annotations

from engine.render.errors import RenderError

SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID",
    "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
)
OVERSIGNED_HEADERS = ("From", "List-Unsubscribe", "List-Unsubscribe-Post")


class DkimError(RenderError):
    """DKIM cannot sign: dkimpy missing, or a key, selector or domain it refuses."""


class DkimSigner:
    """Signs messages as `selector._domainkey.domain` with an RSA private key (PEM)."""

    def __init__(self, selector: str, domain: str, private_key_pem: bytes | str) -> None:
        try:
            import dkim
        except ImportError as exc:  # pragma: no cover - dkimpy is in the test extra
            raise DkimError("DKIM signing needs dkimpy: pip install 'consentry[dkim]'") from exc
        self._dkim = dkim
        self.selector = selector
        self.domain = domain
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("ascii")
        self.key_pem = (private_key_pem.encode("ascii") if isinstance(private_key_pem, str)
                        else private_key_pem)
        self._headers = [name.lower().encode("ascii")
                         for name in SIGNED_HEADERS + OVERSIGNED_HEADERS]
        # Fail at campaign launch, not on the first recipient.
        self.sign(b"From: a@example.com\r\nSubject: key check\r\n\r\nkey check\r\n")

    def sign(self, message: bytes) -> bytes:
        """The `DKIM-Signature:` header line(s) for `message`, CRLF-terminated, to put in
        front of it."""
        try:
            return self._dkim.sign(
                message,
                self._selector,
                self._domain,
                self.key_pem,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=self._headers,
                linesep=b"\r\n",
            )
        except self._dkim.DKIMException as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from exc
