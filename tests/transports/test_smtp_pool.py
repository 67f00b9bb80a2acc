"""SmtpPool against real servers: an independent aiosmtpd sink and our capture server."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from engine.capture import SmtpCaptureServer
from engine.transports import (
    PermanentError,
    SmtpPool,
    SmtpSettings,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportTimeoutError,
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
    ("smtp://127.0.0.1:1025", SmtpSettings("127.0.0.1", 1025)),
    ("smtp://relay.example", SmtpSettings("relay.example", 25)),
    ("smtp://u%40x.example:p%3Aw@relay.example:2525?starttls=true",
     SmtpSettings("relay.example", 2525, "u@x.example", "p:w", start_tls=True)),
    ("smtp://relay.example?starttls=true", SmtpSettings("relay.example", 587, start_tls=True)),
    ("smtp://relay.example:25?starttls=false", SmtpSettings("relay.example", 25, start_tls=False)),
    ("smtps://relay.example", SmtpSettings("relay.example", 465, use_tls=True, start_tls=False)),
])
def test_url_parsing(url: str, expected: SmtpSettings) -> None:
    assert SmtpSettings.from_url(url) == expected


@pytest.mark.parametrize("url", [
    "http://relay.example", "smtp://", "smtp://relay.example?starttls=maybe",
    "smtp://relay.example?tls=1", "smtps://relay.example?starttls=true", "smtp://relay.example:99999",
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP URL"):
        SmtpSettings.from_url(url)


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
