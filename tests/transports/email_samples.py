"""Pre-rendered email messages for the transport tests (bytes, as the pipeline hands them over)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY


def make_message(subject: str = "Spring offer", body: str = "Hello\n", message_id: str | None = "<m1@acme.example>",
                 html: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Acme Service <service@acme.example>"
    message["To"] = "jane@example.com"
    message["Subject"] = subject
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=SMTP_POLICY)
