"""SmtpPool against real servers: an independent aiosmtpd sink and our capture server."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from engine.capture import SmtpCaptureServer
from engine.config import RelaySettings, Settings, TlsMode
from engine.errors import InputError
from engine.transports import (
    PermanentError,
    RelayCertificateError,
    RelayTlsError,
    SmtpPool,
    StopCause,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportTimeoutError,
    tls_context_for,
)
from engine.transports.smtp import is_hard_bounce
from tests.transports.conftest import SINK_PASSWORD, SINK_USER, Sink
from tests.transports.email_samples import make_message

SENDER = "service@acme.example"


async def test_sends_real_smtp_to_aiosmtpd_and_reuses_the_connection(sink: Sink) -> None:
    pool = SmtpPool(f"smtp://127.0.0.1:{sink.port}", size=1)
    try:
        messages = [make_message(subject=f"n{n}", message_id=f"<n{n}@acme.example>") for n in range(5)]
        for data in messages:
            reply = await pool.send_raw(SENDER, ["jane@example.com"], data)
            assert reply == "2.0.0 Message accepted for delivery"
    finally:
        await pool.close()
    envelopes = await sink.wait_for(5)
    assert [envelope.original_content for envelope in envelopes] == messages
    assert {envelope.mail_from for envelope in envelopes} == {SENDER}
    assert all(envelope.rcpt_tos == ["jane@example.com"] for envelope in envelopes)
    assert len(set(sink.peers)) == 1  # one TCP connection for all five
    assert pool.connections_opened == 1


async def test_plain_addresses_reach_the_relay_as_aiosmtplib_would_send_them(sink: Sink) -> None:
    """MAIL and RCPT of plain addresses skip aiosmtplib's parsing (engine/transports/smtp.py):
    the relay must see exactly the envelope aiosmtplib's own `sendmail` gives it, options too;
    a quoted local part still goes through aiosmtplib's path."""
    import aiosmtplib

    data = make_message(subject="envelope", message_id="<envelope@acme.example>")
    cases = [
        ("bounces+ab2cd3ef4gh5ij6k@acme.example", ["first.last@example.com"]),
        ("service@acme.example", ['"john doe"@example.com', "o'neil+tag@example.co.uk"]),
    ]
    pool = SmtpPool(f"smtp://127.0.0.1:{sink.port}", size=1)
    try:
        for sender, recipients in cases:
            await pool.send_raw(sender, recipients, data)
    finally:
        await pool.close()
    ours = await sink.wait_for(len(cases))
    ours = [(envelope.mail_from, envelope.mail_options, envelope.rcpt_tos) for envelope in ours]
    sink.reset()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
    await client.connect()
    try:
        for sender, recipients in cases:
            await client.sendmail(sender, recipients, data)
    finally:
        await client.quit()
    theirs = [(envelope.mail_from, envelope.mail_options, envelope.rcpt_tos) for envelope in await sink.wait_for(len(cases))]
    assert ours == theirs
    assert ours[0] == ("bounces+ab2cd3ef4gh5ij6k@acme.example", [f"SIZE={len(data)}"], ["first.last@example.com"])


async def test_concurrent_sends_share_at_most_size_connections(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(smtp_server.url, size=3)
    try:
        await asyncio.gather(*(
            pool.send_raw(SENDER, [f"user{n}@example.com"], make_message(message_id=f"<c{n}@acme>"))
            for n in range(30)
        ))
    finally:
        await pool.close()
    assert len(await smtp_server.wait_for(30)) == 30
    assert smtp_server.connections == pool.connections_opened <= 3


async def test_starttls_and_auth_with_aiosmtpd(tls_sink: Sink, client_tls_context: ssl.SSLContext) -> None:
    url = f"smtp://{SINK_USER}:{SINK_PASSWORD}@127.0.0.1:{tls_sink.port}?starttls=true"
    pool = SmtpPool(url, size=1, tls_context=client_tls_context)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    await tls_sink.wait_for(1)
    assert tls_sink.tls == [True]
    assert tls_sink.authenticated == [True]


async def test_wrong_password_is_an_auth_error(tls_sink: Sink, client_tls_context: ssl.SSLContext) -> None:
    pool = SmtpPool(f"smtp://{SINK_USER}:wrong@127.0.0.1:{tls_sink.port}?starttls=true",
                    tls_context=client_tls_context)
    with pytest.raises(TransportAuthError) as failure:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    await pool.close()
    assert failure.value.code == 535
    assert failure.value.block_cause is None
    assert failure.value.stop_cause == StopCause.CREDENTIALS
    assert str(failure.value).startswith(f"relay refused credentials for user {SINK_USER}: 535 ")


async def test_auth_against_the_capture_server(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(f"smtp://user%40acme.example:pa%3Ass@127.0.0.1:{smtp_server.port}")
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    await smtp_server.wait_for(1)


async def test_hard_bounce_is_permanent_with_a_block_cause(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.bounce = {"gone@example.com"}
    pool = SmtpPool(smtp_server.url)
    try:
        with pytest.raises(PermanentError) as failure:
            await pool.send_raw(SENDER, ["gone@example.com"], make_message())
        # The session survives a refused recipient: the next message uses it.
        await pool.send_raw(SENDER, ["fine@example.com"], make_message(message_id="<after@acme>"))
    finally:
        await pool.close()
    error = failure.value
    assert (error.code, error.block_cause) == (550, "hard_bounce")
    assert "5.1.1" in error.message
    assert not isinstance(error, TransientError)
    assert pool.connections_opened == 1


async def test_partly_refused_recipients_still_send(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.bounce = {"gone@example.com"}
    pool = SmtpPool(smtp_server.url)
    try:
        await pool.send_raw(SENDER, ["gone@example.com", "fine@example.com"], make_message())
    finally:
        await pool.close()
    [message] = await smtp_server.wait_for(1)
    assert message["to"] == "fine@example.com"


async def test_tempfail_and_fail_every_n_are_transient(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.tempfail = {"busy@example.com"}
    pool = SmtpPool(smtp_server.url)
    try:
        with pytest.raises(TransientError) as at_rcpt:
            await pool.send_raw(SENDER, ["busy@example.com"], make_message())
        smtp_server.fail_every_n = 1
        with pytest.raises(TransientError) as at_data:
            await pool.send_raw(SENDER, ["jane@example.com"], make_message())
        smtp_server.fail_every_n = 0
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    assert at_rcpt.value.code == 451
    assert at_data.value.code == 451
    assert not isinstance(at_rcpt.value, ConnectionError)


async def test_refused_connections_are_transient_and_the_pool_recovers(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(smtp_server.url, size=2)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<r1@acme>"))
        smtp_server.refuse = True  # drops the pooled connection too
        for _ in range(2):
            with pytest.raises(TransientError) as failure:
                await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<r2@acme>"))
            assert isinstance(failure.value, ConnectionError)
        smtp_server.refuse = False
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<r2@acme>"))
    finally:
        await pool.close()
    assert [m["message_id"] for m in await smtp_server.wait_for(2)] == ["<r1@acme>", "<r2@acme>"]


async def test_server_down_then_back_on_the_same_port(tmp_path: Path) -> None:
    server = await SmtpCaptureServer(port=0, store_dir=tmp_path).start()
    port = server.port
    pool = SmtpPool(f"smtp://127.0.0.1:{port}", size=1)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<d1@acme>"))
        await server.stop()
        with pytest.raises(TransportConnectionError):
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<d2@acme>"))
        with pytest.raises(TransportConnectionError):  # connection refused: nobody listens
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<d2@acme>"))
        async with SmtpCaptureServer(port=port, store_dir=tmp_path) as again:
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<d2@acme>"))
            await again.wait_for(1)
    finally:
        await pool.close()
    assert pool.connections_opened == 2


async def test_no_reply_in_time_is_a_timeout(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(smtp_server.url, timeout=5)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<t1@acme>"))
        pool.timeout = 0.05
        smtp_server.latency_ms = 400
        with pytest.raises(TransportTimeoutError) as failure:
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<t2@acme>"))
    finally:
        await pool.close()
    assert isinstance(failure.value, TimeoutError)
    assert isinstance(failure.value, TransientError)


async def test_non_ascii_addresses_and_bodies(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(smtp_server.url)
    data = ("From: sérvice@acme.example\r\nTo: jöhn@exämple.com\r\nSubject: Déjà\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Déjà vu\r\n").encode()  # raw 8-bit: the pool must say BODY=8BITMIME
    try:
        await pool.send_raw("sérvice@acme.example", ["jöhn@exämple.com"], data)
    finally:
        await pool.close()
    [message] = await smtp_server.wait_for(1)
    assert (message["from"], message["to"]) == ("sérvice@acme.example", "jöhn@exämple.com")
    assert message["body"] == "Déjà vu\n"


async def test_max_messages_per_connection_rotates_sessions(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(smtp_server.url, size=1, max_messages_per_connection=2)
    try:
        for n in range(5):
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id=f"<rot{n}@acme>"))
    finally:
        await pool.close()
    await smtp_server.wait_for(5)
    assert pool.connections_opened == 3


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://127.0.0.1:1025", RelaySettings("127.0.0.1", 1025, tls=TlsMode.NONE)),
    ("smtp://localhost", RelaySettings("localhost", 25, tls=TlsMode.NONE)),
    # Off loopback, STARTTLS is required unless the URL says otherwise.
    ("smtp://relay.example", RelaySettings("relay.example", 587, tls=TlsMode.STARTTLS)),
    ("smtp://u%40x.example:p%3Aw@relay.example:2525?starttls=true",
     RelaySettings("relay.example", 2525, "u@x.example", "p:w", tls=TlsMode.STARTTLS)),
    ("smtp://relay.example?starttls=true", RelaySettings("relay.example", 587, tls=TlsMode.STARTTLS)),
    ("smtp://127.0.0.1:2525?starttls=true", RelaySettings("127.0.0.1", 2525, tls=TlsMode.STARTTLS)),
    ("smtp://capture-smtp:1025?starttls=false&insecure=true", RelaySettings("capture-smtp", 1025, tls=TlsMode.NONE)),
    ("smtps://relay.example", RelaySettings("relay.example", 465, tls=TlsMode.IMPLICIT)),
])
def test_url_parsing(url: str, expected: RelaySettings) -> None:
    assert RelaySettings.parse(url) == expected


@pytest.mark.parametrize(("url", "says"), [
    ("http://relay.example", "expected smtp://"),
    ("smtp://", "expected smtp://"),
    ("smtp://relay.example?starttls=maybe", "starttls must be true or false"),
    ("smtp://relay.example?tls=1", "unknown parameter 'tls'"),
    ("smtps://relay.example?starttls=true", "already TLS"),
    ("smtp://relay.example:99999", "bad port"),
    # Clear text off loopback would show the password to the network.
    ("smtp://relay.example:25?starttls=false", "not a loopback address"),
    ("smtp://mailer:s3cret@relay.example:25?starttls=false", "'smtp://mailer:***@relay.example:25?starttls=false'"),
])
def test_bad_urls_are_refused_naming_the_variable(url: str, says: str) -> None:
    with pytest.raises(InputError) as refused:
        Settings.from_environ({"CONSENTRY_SMTP_URL": url})
    assert refused.value.field == "CONSENTRY_SMTP_URL"
    assert says in str(refused.value) and "s3cret" not in str(refused.value)


@pytest.mark.parametrize(("env", "field", "says"), [
    ({"CONSENTRY_SMTP_CA_FILE": "/ca.pem"}, "CONSENTRY_SMTP_CA_FILE", "uses no TLS"),
    ({"CONSENTRY_SMTP_URL": "smtps://relay.example", "CONSENTRY_SMTP_CLIENT_KEY": "/k.pem"},
     "CONSENTRY_SMTP_CLIENT_KEY", "needs its certificate"),
    ({"CONSENTRY_SMTP_EHLO_NAME": "mail host"}, "CONSENTRY_SMTP_EHLO_NAME", "not a host name"),
    ({"CONSENTRY_SMTP_CONNECT_TIMEOUT_S": "soon"}, "CONSENTRY_SMTP_CONNECT_TIMEOUT_S", "not a number"),
    ({"CONSENTRY_SMTP_COMMAND_TIMEOUT_S": "0"}, "CONSENTRY_SMTP_COMMAND_TIMEOUT_S", "must be positive"),
    ({"CONSENTRY_SMTP_POLICY_STOP_AFTER": "-1"}, "CONSENTRY_SMTP_POLICY_STOP_AFTER", "whole number"),
])
def test_bad_relay_settings_are_refused_naming_the_variable(env: dict[str, str], field: str, says: str) -> None:
    with pytest.raises(InputError) as refused:
        Settings.from_environ(env)
    assert refused.value.field == field and says in str(refused.value)


def test_relay_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_environ({
        "CONSENTRY_SMTP_URL": "smtp://mailer:pw@relay.example?starttls=true",
        "CONSENTRY_SMTP_CA_FILE": "/etc/relay/ca.pem", "CONSENTRY_SMTP_CA_DIR": "/etc/relay/certs",
        "CONSENTRY_SMTP_CLIENT_CERT": "/etc/relay/me.pem", "CONSENTRY_SMTP_CLIENT_KEY": "/etc/relay/me.key",
        "CONSENTRY_SMTP_EHLO_NAME": "mailer.acme.example",
        "CONSENTRY_SMTP_CONNECT_TIMEOUT_S": "5", "CONSENTRY_SMTP_COMMAND_TIMEOUT_S": "120",
        "CONSENTRY_SMTP_POLICY_STOP_AFTER": "0",
    })
    assert settings.relay == RelaySettings(
        "relay.example", 587, "mailer", "pw", TlsMode.STARTTLS, "/etc/relay/ca.pem", "/etc/relay/certs",
        "/etc/relay/me.pem", "/etc/relay/me.key", "mailer.acme.example", 5.0, 120.0,
    )
    assert settings.smtp_policy_stop_after == 0
    assert "pw" not in repr(settings.relay)
    # --smtp-url replaces the variable before it is parsed, so a bad one does not matter.
    chosen = Settings.from_environ({"CONSENTRY_SMTP_URL": "bogus"}, smtp_url="smtp://127.0.0.1:2525")
    assert (chosen.relay.host, chosen.relay.port, chosen.relay.tls) == ("127.0.0.1", 2525, TlsMode.NONE)


def test_unreadable_tls_files_are_refused_before_sending(tmp_path: Path) -> None:
    missing = RelaySettings.parse("smtps://relay.example", ca_file=str(tmp_path / "nowhere.pem"))
    with pytest.raises(InputError, match="no such file") as refused:
        tls_context_for(missing)
    assert refused.value.field == "CONSENTRY_SMTP_CA_FILE"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(InputError, match="no PEM certificate") as refused:
        tls_context_for(RelaySettings.parse("smtps://relay.example", ca_file=str(garbage)))
    assert refused.value.field == "CONSENTRY_SMTP_CA_FILE"


async def test_an_untrusted_certificate_stops_rather_than_retries(tls_sink: Sink) -> None:
    """The sink's certificate is self-signed: the system's trust store does not know it."""
    pool = SmtpPool(f"smtp://127.0.0.1:{tls_sink.port}?starttls=true", size=1)
    with pytest.raises(RelayCertificateError) as failure:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    await pool.close()
    assert failure.value.stop_cause == StopCause.CERTIFICATE
    assert str(failure.value).startswith("relay certificate not trusted (the system's trust store")
    assert "certificate verify failed" in str(failure.value)
    assert tls_sink.envelopes == []


async def test_a_ca_file_makes_the_relay_trusted(tls_sink: Sink, certificate: tuple[Path, Path]) -> None:
    relay = RelaySettings.parse(f"smtp://{SINK_USER}:{SINK_PASSWORD}@127.0.0.1:{tls_sink.port}?starttls=true",
                                ca_file=str(certificate[0]), ehlo_name="mailer.acme.example")
    pool = SmtpPool(relay, size=1)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    await tls_sink.wait_for(1)
    assert tls_sink.tls == [True] and tls_sink.authenticated == [True]


async def test_starttls_required_but_not_offered_stops(smtp_server: SmtpCaptureServer) -> None:
    pool = SmtpPool(f"smtp://127.0.0.1:{smtp_server.port}?starttls=true", size=1)
    with pytest.raises(RelayTlsError, match="does not offer STARTTLS") as failure:
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    await pool.close()
    assert failure.value.stop_cause == StopCause.TLS
    assert smtp_server.messages == []


@pytest.mark.parametrize(("code", "message", "bounce"), [
    (550, "5.1.1 <x@y>: Recipient address rejected: User unknown", True),
    (550, "5.1.10 Null MX", True),
    (553, "5.1.3 Bad destination mailbox address syntax", True),
    (550, "5.2.1 Mailbox disabled", True),
    (552, "5.2.2 Mailbox full", False),
    (550, "5.7.1 Message rejected as spam", False),
    (550, "5.1.8 Bad sender's system address", False),
    (550, "User unknown", True),
    (554, "Transaction failed", False),
    (451, "4.2.0 Try later", False),
])
def test_hard_bounce_classification(code: int, message: str, bounce: bool) -> None:
    assert is_hard_bounce(code, message) is bounce
