"""DKIM as configuration: tenant.yaml names a key per sender domain, campaigns go out signed.

The signature is verified with dkimpy on the bytes the SMTP sink received (the DNS lookup
answered with the key's public half), and must cover From, Subject, Date, Message-ID and
both List-Unsubscribe headers (RFC 8058). Signing runs in the campaign's worker processes.
"""

from __future__ import annotations

import base64
import email
import subprocess

import dkim
import dkim.util
import pytest

from tests.cli import consentry, ok
from tests.engine.scenario import AT, build

SELECTOR = "s2026"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """(private key file, DNS TXT record) of a fresh 2048-bit RSA key."""
    directory = tmp_path_factory.mktemp("dkim")
    private = directory / "acme.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    return str(private), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def with_dkim(files: dict, key_file: str, domain: str = "acme.example") -> None:
    tenant = files["tenant"]
    tenant.write_text(tenant.read_text() + f"dkim:\n  - {{domain: {domain}, selector: {SELECTOR}, key_file: {key_file}}}\n")


def test_a_campaign_is_signed_with_its_domains_key(tmp_path, sqlite_url, capture, key_pair, monkeypatch):
    key_file, record = key_pair
    files = build(tmp_path, sqlite_url, enforce_review=False)
    with_dkim(files, key_file)
    ok("tenant", "apply", files["tenant"], "--db", sqlite_url)
    monkeypatch.setenv("CONSENTRY_DKIM_PROCESSES", "2")

    ok("campaign", "send", files["email"], "--at", AT, "--db", sqlite_url)
    mails = capture.call(capture.smtp.wait_for(3, timeout=10))
    assert len(mails) == 3

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.acme.example.".encode()
        return record

    for mail in mails:
        raw = mail["raw"]
        assert dkim.verify(raw, dnsfunc=dns), raw[:400]
        header = email.message_from_bytes(raw)["DKIM-Signature"]
        tags = dkim.util.parse_tag_value("".join(header.split()).encode())
        signed = {name.lower() for name in tags[b"h"].split(b":")}
        assert {b"from", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post"} <= signed
        assert (tags[b"d"], tags[b"s"]) == (b"acme.example", SELECTOR.encode())


def test_a_tenant_with_keys_refuses_to_send_from_an_unsigned_domain(tmp_path, sqlite_url, capture, key_pair):
    key_file, _record = key_pair
    files = build(tmp_path, sqlite_url, enforce_review=False)
    with_dkim(files, key_file, domain="other.example")
    ok("tenant", "apply", files["tenant"], "--db", sqlite_url)

    result = consentry("campaign", "send", files["email"], "--at", AT, "--db", sqlite_url)
    assert result.code == 2
    assert "sender: no DKIM key for acme.example (the tenant signs other.example)" in result.err
    assert capture.smtp.messages == []


def test_a_key_file_that_cannot_sign_is_refused_at_apply(tmp_path, sqlite_url):
    files = build(tmp_path, sqlite_url, enforce_review=False)
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with_dkim(files, "not-a-key.pem")
    result = consentry("tenant", "apply", files["tenant"], "--db", sqlite_url)
    assert result.code == 2
    line = len(files["tenant"].read_text().splitlines())
    assert f"{files['tenant']}:{line}: dkim.0.key_file: {tmp_path / 'not-a-key.pem'} is not a PEM RSA private key" in result.err

    with_dkim(files, "missing.pem", domain="acme.example")
    result = consentry("tenant", "apply", files["tenant"], "--db", sqlite_url)
    assert result.code == 2 and "cannot read the DKIM key" in result.err


def test_an_individual_reply_is_signed_too(tmp_path, sqlite_url, capture, key_pair):
    key_file, record = key_pair
    files = build(tmp_path, sqlite_url, enforce_review=False)
    with_dkim(files, key_file)
    ok("tenant", "apply", files["tenant"], "--db", sqlite_url)
    reply = ("send", "individual", "--tenant", "acme-motors", "--contact", "E1", "--channel", "email",
             "--subject", "Your test drive", "--body", "See you Saturday at 10.", "--db", sqlite_url)

    # The made-up default sender's domain has no key: refused, nothing sent or recorded.
    refused = consentry(*reply)
    assert refused.code == 2 and "--from: no DKIM key for acme-motors.consentry.invalid" in refused.err
    ok(*reply, "--from", "service@acme.example")
    (mail,) = capture.call(capture.smtp.wait_for(1, timeout=10))
    assert dkim.verify(mail["raw"], dnsfunc=lambda name, timeout=5: record)
