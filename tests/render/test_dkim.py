"""DKIM: signatures that dkimpy verifies, covering the RFC 8058 headers."""

from __future__ import annotations

import dkim
import pytest

from engine.render import (
    CampaignContext,
    DkimError,
    DkimSigner,
    EmailSkeleton,
    TemplateSource,
    compile_campaign_templates,
    recipient_context,
)
from engine.render.signing import OVERSIGNED_HEADERS, SIGNED_HEADERS
from tests.render.conftest import POSTAL

DATE_US = 1_700_000_000_000_000


def make_skeleton(signer: DkimSigner, *, bulk: bool) -> EmailSkeleton:
    source = TemplateSource(channel="email", name="t", text="Hi {{ first_name }}\n",
                            text_origin="t.txt", html="<p>Hi {{ first_name }}</p>",
                            html_origin="t.html")
    templates = compile_campaign_templates(source, subject="Offer for {{ first_name }}")
    return EmailSkeleton.from_templates(
        templates, sender_email="service@acme.example", sender_name="Acme", bulk=bulk,
        postal_address=POSTAL if bulk else None,
        unsubscribe_mailto="unsubscribe@acme.example" if bulk else None, dkim=signer,
    )


@pytest.fixture(scope="module")
def signer(dkim_key: tuple[bytes, bytes]) -> DkimSigner:
    return DkimSigner("s2024", "acme.example", dkim_key[0])


@pytest.fixture(scope="module")
def dns(dkim_key: tuple[bytes, bytes]):
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return dkim_key[1] if name == b"s2024._domainkey.acme.example." else None
    return lookup


def test_bulk_signature_verifies_and_covers_list_unsubscribe(
    signer: DkimSigner, dns, campaign_context: CampaignContext
) -> None:
    data = make_skeleton(signer, bulk=True).render(
        "ann@example.com", "Zoë Ann", campaign_context.for_recipient(4, first_name="Zoë"),
        "c.4@acme.example", DATE_US)
    assert data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=dns)
    signature = dkim.util.parse_tag_value(
        data.split(b"\r\nFrom: ", 1)[0][len(b"DKIM-Signature: "):].replace(b"\r\n", b""))
    signed = [name.strip() for name in signature[b"h"].split(b":")]
    for header in (b"from", b"to", b"subject", b"date", b"message-id",
                   b"list-unsubscribe", b"list-unsubscribe-post"):
        assert header in signed
    assert signed.count(b"list-unsubscribe") == 2  # oversigned: none can be added
    assert signature[b"c"] == b"relaxed/relaxed" and signature[b"d"] == b"acme.example"
    assert [h.lower() for h in SIGNED_HEADERS + OVERSIGNED_HEADERS] == [
        name.decode() for name in signed]


def test_tampering_breaks_the_signature(signer: DkimSigner, dns,
                                        campaign_context: CampaignContext) -> None:
    data = make_skeleton(signer, bulk=True).render(
        "ann@example.com", None, campaign_context.for_recipient(4, first_name="Ann"),
        "c.4@acme.example", DATE_US)
    assert not dkim.verify(data.replace(b"Offer for Ann", b"Offer for Bob"), dnsfunc=dns)
    # Swap the one-click link in the header only (the body, and its hash, unchanged).
    head, body = data.split(b"\r\n\r\n", 1)
    evil_head = head.replace(b"https://links.acme.example/u/", b"https://evil.example/u/")
    assert evil_head != head
    assert not dkim.verify(evil_head + b"\r\n\r\n" + body, dnsfunc=dns)


def test_individual_message_verifies_and_refuses_added_list_headers(
    signer: DkimSigner, dns
) -> None:
    data = make_skeleton(signer, bulk=False).render(
        "ann@example.com", "Ann", recipient_context(first_name="Ann"), "i.1@acme.example",
        DATE_US)
    assert dkim.verify(data, dnsfunc=dns)
    added = data.replace(b"\r\nMIME-Version:",
                         b"\r\nList-Unsubscribe: <https://evil.example/u/x>\r\nMIME-Version:")
    assert not dkim.verify(added, dnsfunc=dns)


def test_unusable_key_fails_at_construction() -> None:
    with pytest.raises(DkimError):
        DkimSigner("s", "acme.example", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
