"""The SMTP capture server, spoken to over a raw socket and with aiosmtplib."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import aiosmtplib
import pytest

from engine.capture import SmtpCaptureServer
from engine.capture.mime import decode_words, summarize
from engine.capture.store import CaptureStore, read_messages
from tests.transports.email_samples import make_message


class Client:
    """A line-level SMTP client: what we write is exactly what the server gets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await client.reply()).startswith("220 ")
        return client

    async def reply(self) -> str:
        lines = []
        async with asyncio.timeout(5):
            while True:
                line = (await self.reader.readline()).decode()
                assert line, "connection closed"
                lines.append(line.rstrip("\r\n"))
                if line[3:4] != "-":
                    return "\n".join(lines)

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_ehlo_advertises_the_extensions(smtp_server: SmtpCaptureServer) -> None:
    client = await Client.connect(smtp_server.port)
    reply = await client.command("EHLO client.example")
    for extension in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE"):
        assert extension in reply
    assert (await client.command("QUIT")).startswith("221")
    await client.close()


async def test_commands_out_of_order_are_refused(smtp_server: SmtpCaptureServer) -> None:
    client = await Client.connect(smtp_server.port)
    assert (await client.command("MAIL FROM:<a@b.example>")).startswith("503")
    assert (await client.command("HELO client.example")).startswith("250")
    assert (await client.command("RCPT TO:<x@y.example>")).startswith("503")
    assert (await client.command("DATA")).startswith("503")
    assert (await client.command("MAIL FROM:<a@b.example>")).startswith("250")
    assert (await client.command("MAIL FROM:<a@b.example>")).startswith("503")
    assert (await client.command("RSET")).startswith("250")
    assert (await client.command("NOOP")).startswith("250")
    assert (await client.command("BOGUS")).startswith("500")
    assert (await client.command("MAIL FROM:<a@b.example> SIZE=999999999999")).startswith("552")
    await client.close()
    assert smtp_server.accepted == 0


async def test_pipelined_messages_on_one_connection_with_dot_unstuffing(smtp_server: SmtpCaptureServer) -> None:
    client = await Client.connect(smtp_server.port)
    await client.command("EHLO client.example")
    for number in (1, 2):
        # PIPELINING: the envelope in one write, the replies read afterwards.
        client.writer.write(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        assert [(await client.reply())[:3] for _ in range(3)] == ["250", "250", "354"]
        client.writer.write(
            f"Subject: n{number}\r\nMessage-ID: <p{number}@b.example>\r\n\r\n"
            "..a line that began with a dot\r\n...two\r\n.\r\n".encode())
        assert (await client.reply()).startswith("250 2.0.0")
    assert (await client.command("QUIT")).startswith("221")
    await client.close()
    messages = await smtp_server.wait_for(2)
    assert [message["subject"] for message in messages] == ["n1", "n2"]
    assert messages[0]["body"] == ".a line that began with a dot\n..two\n"
    assert messages[0]["raw"].endswith(b"\r\n..two\r\n")
    assert smtp_server.connections == 1


async def test_aiosmtplib_round_trip_keeps_the_bytes(smtp_server: SmtpCaptureServer) -> None:
    data = make_message(body=".starts with a dot\nÉté 20 % off\n")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        _, reply = await client.sendmail("service@acme.example", ["jane@example.com"], data)
    assert reply.startswith("2.0.0 Ok: queued as ")
    [message] = await smtp_server.wait_for(1)
    assert message["raw"] == data
    assert message["body"] == ".starts with a dot\nÉté 20 % off\n"
    assert message["from"] == "service@acme.example"
    assert message["to"] == "jane@example.com"
    assert message["queue_id"] in reply


async def test_a_message_larger_than_one_read(smtp_server: SmtpCaptureServer) -> None:
    body = "".join(f"line {n}: {'x' * 60}\n" for n in range(5000)) + ".\n..\nend\n"  # ~350 KB
    data = make_message(body=body, message_id="<big@acme.example>")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        for message_id in ("<big@acme.example>", "<big2@acme.example>"):
            await client.sendmail("a@b.example", ["x@y.example"],
                                  data.replace(b"<big@acme.example>", message_id.encode()))
    messages = await smtp_server.wait_for(2)
    assert [m["raw"] for m in messages][0] == data
    assert messages[1]["body"] == messages[0]["body"]
    assert messages[0]["body"].endswith(".\n..\nend\n")


async def test_duplicate_message_id_is_acknowledged_but_stored_once(smtp_server: SmtpCaptureServer) -> None:
    data = make_message(message_id="<resend@acme.example>")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        _, first = await client.sendmail("service@acme.example", ["jane@example.com"], data)
        _, second = await client.sendmail("service@acme.example", ["jane@example.com"], data)
        _, other = await client.sendmail("service@acme.example", ["jane@example.com"],
                                         make_message(message_id="<other@acme.example>"))
    assert first.split()[-1] in second  # the same queue id, acknowledged again
    assert smtp_server.accepted == 2
    assert smtp_server.duplicates == 1
    assert [m["message_id"] for m in smtp_server.messages] == ["<resend@acme.example>", "<other@acme.example>"]


async def test_messages_without_message_id_are_never_deduplicated(smtp_server: SmtpCaptureServer) -> None:
    data = make_message(message_id=None)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        for _ in range(2):
            await client.sendmail("service@acme.example", ["jane@example.com"], data)
    await smtp_server.wait_for(2)
    assert smtp_server.duplicates == 0


async def test_dedupe_survives_a_restart_on_the_same_store(tmp_path: Path) -> None:
    data = make_message(message_id="<kept@acme.example>")
    for _ in range(2):
        async with SmtpCaptureServer(port=0, store_dir=tmp_path) as server:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port) as client:
                await client.sendmail("service@acme.example", ["jane@example.com"], data)
    assert len(read_messages(tmp_path)) == 1
    assert server.duplicates == 1


async def test_latency_is_added_to_every_reply(smtp_server: SmtpCaptureServer) -> None:
    client = await Client.connect(smtp_server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.command("NOOP")
    fast = loop.time() - started
    smtp_server.latency_ms = 150
    started = loop.time()
    assert (await client.command("NOOP")).startswith("250")
    assert (await client.command("NOOP")).startswith("250")
    slow = loop.time() - started
    await client.close()
    assert slow >= 0.3 > fast


async def test_bounce_tempfail_and_domains_at_rcpt(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.bounce = {"GONE@example.com", "@Nowhere.example"}  # matched case-insensitively
    smtp_server.tempfail = {"busy@example.com"}
    client = await Client.connect(smtp_server.port)
    await client.command("EHLO client.example")
    await client.command("MAIL FROM:<a@b.example>")
    assert (await client.command("RCPT TO:<Gone@Example.com>")).startswith("550 5.1.1")
    assert (await client.command("RCPT TO:<anyone@nowhere.example>")).startswith("550 5.1.1")
    assert (await client.command("RCPT TO:<busy@example.com>")).startswith("451 4.")
    assert (await client.command("RCPT TO:<fine@example.com>")).startswith("250")
    await client.close()


async def test_fail_every_n_fails_at_the_end_of_data(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.fail_every_n = 2
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        await client.sendmail("a@b.example", ["x@y.example"], make_message(message_id="<f1@b>"))
        with pytest.raises(aiosmtplib.SMTPDataError) as failure:
            await client.sendmail("a@b.example", ["x@y.example"], make_message(message_id="<f2@b>"))
        await client.sendmail("a@b.example", ["x@y.example"], make_message(message_id="<f2@b>"))
    assert failure.value.code == 451
    assert [m["message_id"] for m in smtp_server.messages] == ["<f1@b>", "<f2@b>"]


async def test_refuse_closes_connections_before_the_greeting(smtp_server: SmtpCaptureServer) -> None:
    smtp_server.refuse = True
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp_server.port)
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed, no greeting
    writer.close()


async def test_oversized_message_is_refused(tmp_path: Path) -> None:
    async with SmtpCaptureServer(port=0, store_dir=tmp_path, max_size=1000) as server:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port) as client:
            # aiosmtplib announces SIZE in MAIL FROM, so the refusal comes there.
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await client.sendmail("a@b.example", ["x@y.example"], make_message(body="x" * 5000))
        raw = await Client.connect(server.port)
        await raw.command("HELO c")
        await raw.command("MAIL FROM:<a@b.example>")
        await raw.command("RCPT TO:<x@y.example>")
        await raw.command("DATA")
        raw.writer.write(b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n.\r\n")
        assert (await raw.reply()).startswith("552")
        assert (await raw.command("NOOP")).startswith("250")  # the session goes on
        await raw.close()
    assert refused.value.code == 552
    assert server.accepted == 0


async def test_store_lines_have_the_formats_fields(smtp_server: SmtpCaptureServer) -> None:
    data = make_message(subject="Ça va? ✓ — offer", body="Bonjour Jeanne,\nvoilà.\n",
                        html="<p>Bonjour <b>Jeanne</b></p>", message_id="<fields@acme.example>")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        await client.sendmail("service@acme.example", ["jeanne@example.fr"], data)
    await smtp_server.wait_for(1)
    line = smtp_server.store.path.read_text(encoding="utf-8").splitlines()[-1]
    record = json.loads(line)
    assert record["channel"] == "email"
    assert record["to"] == "jeanne@example.fr"
    assert record["from"] == "service@acme.example"
    assert record["subject"] == "Ça va? ✓ — offer"
    assert record["body"] == "Bonjour Jeanne,\nvoilà.\n"
    assert "html" not in record  # the HTML part stays in the raw bytes
    assert record["message_id"] == "<fields@acme.example>"
    assert ["Subject", "Ça va? ✓ — offer"] in record["headers"]
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in record["headers"])
    assert record["received_at"].endswith("Z")
    datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))


async def test_smtputf8_addresses_are_accepted(smtp_server: SmtpCaptureServer) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port) as client:
        await client.sendmail("service@acme.example", ["jöhn@exämple.com"], make_message(message_id="<u@b>"),
                              mail_options=["SMTPUTF8"])
    [message] = await smtp_server.wait_for(1)
    assert message["to"] == "jöhn@exämple.com"


async def test_auth_with_any_credentials(smtp_server: SmtpCaptureServer) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port,
                               username="anyone", password="anything") as client:
        await client.sendmail("a@b.example", ["x@y.example"], make_message(message_id="<auth@b>"))
    await smtp_server.wait_for(1)


async def test_wait_for_times_out_with_a_count(smtp_server: SmtpCaptureServer) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 messages"):
        await smtp_server.wait_for(1, timeout=0.05)


async def test_store_writes_at_once_and_reads_back(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    store.append({"channel": "sms", "to": "+15550001111", "body": "hi"})
    assert read_messages(tmp_path) == [{"channel": "sms", "to": "+15550001111", "body": "hi"}]
    with store.path.open("a") as handle:
        handle.write('{"channel": "sms", "to": "+1555')  # another writer, mid-line
    store.append({"channel": "email", "to": "a@b.example"})
    store.close()
    assert [m["to"] for m in read_messages(tmp_path, limit=5)] == ["+15550001111"]


def test_tail_reads_only_the_last_lines(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"n": n}) + "\n" for n in range(5000))
    (tmp_path / "messages.jsonl").write_text(lines)
    assert [m["n"] for m in read_messages(tmp_path, limit=3)] == [4997, 4998, 4999]
    assert len(read_messages(tmp_path)) == 5000


@pytest.mark.parametrize(("raw", "text"), [
    (b"Subject: plain\r\n\r\nhello\r\n", "hello\n"),
    (b"Subject: folded\r\n and more\r\n\r\nhello\r\n", "hello\n"),
    (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nau lait\r\n",
     "café au lait\n"),
    (b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\npreamble\r\n--outer\r\n'
     b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnot the body\r\n"
     b'--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n'
     b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n--inner\r\n"
     b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nw6l0w6k=\r\n"
     b"--inner--\r\n--outer--\r\n",
     "été"),
    (b"Content-Type: text/html\r\n\r\n<p>only html</p>\r\n", ""),
])
def test_summary_finds_the_text_part(raw: bytes, text: str) -> None:
    assert summarize(raw).text == text


def test_summary_of_headers() -> None:
    summary = summarize(b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID:  <a@b>\r\nX-Long: one\r\n\ttwo\r\n\r\nbody\r\n")
    assert summary.subject == "café"
    assert summary.message_id == "<a@b>"
    assert summary.headers == [["Subject", "café"], ["Message-ID", "<a@b>"], ["X-Long", "one two"]]


def test_encoded_words_are_decoded() -> None:
    assert decode_words("=?utf-8?q?caf=C3=A9?= =?utf-8?b?IG9sw6k=?= and =?iso-8859-1?q?=E9t=E9?=") == "café olé and été"
    assert decode_words("no words here") == "no words here"
    assert decode_words("=?utf-8?q?broken") == "=?utf-8?q?broken"
