"""SmtpPool's pipelined transactions, against a scripted relay that records what it reads.

The capture server and Postfix (tests/transports/test_postfix_relay.py) advertise PIPELINING,
so every other transport and send test goes through this path too; these tests pin what a
relay sees in the cases those servers cannot be told to produce: the commands arriving in
one write, a refused sender, a relay that says 354 with nobody to deliver to, and a guard
that says no while the relay is reading the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from engine.transports import PermanentError, SmtpPool, StopCause
from engine.transports.errors import DispatchCancelled
from tests.transports.email_samples import make_message

SENDER = "service@acme.example"


@dataclass
class ScriptedRelay:
    """An ESMTP relay with PIPELINING whose replies to MAIL, RCPT and DATA can be set."""

    mail_reply: bytes = b"250 2.1.0 Ok"
    rcpt_reply: bytes = b"250 2.1.5 Ok"
    data_reply: bytes = b"354 End data with <CR><LF>.<CR><LF>"
    reads: list[bytes] = field(default_factory=list)  # every chunk read, as it arrived
    commands: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    aborted_in_data: int = 0
    hang_up_after_data_reply: bool = False  # a relay that refuses and goes away (e.g. 421)
    port: int = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.test ESMTP\r\n")
        buffer = b""
        in_data = False
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                self.aborted_in_data += in_data
                break
            self.reads.append(chunk)
            buffer += chunk
            while True:
                if in_data:
                    end = buffer.find(b"\r\n.\r\n")
                    if buffer.startswith(b".\r\n"):
                        end, body = 0, b""
                    elif end < 0:
                        break
                    else:
                        body = buffer[: end + 2]
                    buffer = buffer[end + 5 if body else 3 :]
                    self.messages.append(body)
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                    in_data = False
                    continue
                line, sep, rest = buffer.partition(b"\r\n")
                if not sep:
                    break
                buffer = rest
                self.commands.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-relay.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    writer.write(self.mail_reply + b"\r\n")
                elif verb == b"RCPT":
                    accepted = self.mail_reply.startswith(b"2")
                    writer.write((self.rcpt_reply if accepted else b"503 5.5.1 Error: need MAIL command") + b"\r\n")
                elif verb == b"DATA":
                    writer.write(self.data_reply + b"\r\n")
                    if self.hang_up_after_data_reply:
                        await writer.drain()
                        writer.close()
                        return
                    in_data = self.data_reply.startswith(b"354")
                elif verb == b"RSET":
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def relay() -> AsyncIterator[ScriptedRelay]:
    scripted = ScriptedRelay()
    server = await asyncio.start_server(scripted.session, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    async with server:
        yield scripted


def _pool(relay: ScriptedRelay) -> SmtpPool:
    return SmtpPool(f"smtp://127.0.0.1:{relay.port}", size=1, timeout=5)


async def test_mail_rcpt_and_data_reach_the_relay_in_one_write(relay: ScriptedRelay) -> None:
    messages = [make_message(message_id=f"<p{n}@acme>") for n in range(3)]
    pool = _pool(relay)
    try:
        for n, message in enumerate(messages):
            await pool.send_raw(SENDER, [f"jane{n}@example.com"], message)
    finally:
        await pool.close()
    envelopes = [chunk for chunk in relay.reads if chunk.startswith(b"MAIL FROM:")]
    assert envelopes == [
        f"MAIL FROM:<{SENDER}> size={len(message)}\r\nRCPT TO:<jane{n}@example.com>\r\nDATA\r\n".encode()
        for n, message in enumerate(messages)
    ]
    assert relay.messages == [message if message.endswith(b"\r\n") else message + b"\r\n" for message in messages]
    assert pool.connections_opened == 1


async def test_a_refused_sender_stops_the_run_and_the_session_is_reset(relay: ScriptedRelay) -> None:
    relay.mail_reply = b"553 5.7.1 <service@acme.example>: Sender address rejected: not owned by user"
    relay.data_reply = b"503 5.5.1 Error: need RCPT command"
    pool = _pool(relay)
    try:
        with pytest.raises(PermanentError) as refused:
            await pool.send_raw(SENDER, ["jane@example.com"], make_message())
        assert refused.value.stop_cause == StopCause.SENDER
        assert "Sender address rejected" in str(refused.value)
        relay.mail_reply = b"250 2.1.0 Ok"
        relay.data_reply = b"354 go ahead"
        await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    verbs = [command.split(b" ")[0].split(b":")[0] for command in relay.commands]
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"MAIL", b"RCPT", b"DATA", b"QUIT"]
    assert len(relay.messages) == 1
    assert pool.connections_opened == 1


async def test_a_refused_sender_is_reported_as_such_even_if_the_relay_then_hangs_up(relay: ScriptedRelay) -> None:
    relay.mail_reply = b"553 5.7.1 <service@acme.example>: Sender address rejected: not owned by user"
    relay.data_reply = b"503 5.5.1 Error: need RCPT command"
    relay.hang_up_after_data_reply = True
    pool = _pool(relay)
    try:
        with pytest.raises(PermanentError) as refused:
            await pool.send_raw(SENDER, ["jane@example.com"], make_message())
    finally:
        await pool.close()
    # The refusal stops the campaign; the lost connection (no RSET possible) does not hide it.
    assert refused.value.stop_cause == StopCause.SENDER


async def test_a_relay_that_says_354_with_nobody_to_deliver_to_gets_an_empty_message(relay: ScriptedRelay) -> None:
    relay.rcpt_reply = b"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
    pool = _pool(relay)
    try:
        with pytest.raises(PermanentError) as bounced:
            await pool.send_raw(SENDER, ["nobody@example.com"], make_message())
        assert bounced.value.block_cause == "hard_bounce"
        relay.rcpt_reply = b"250 2.1.5 Ok"
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<after@acme>"))
    finally:
        await pool.close()
    # The refused message ended empty (nothing of it delivered), then the session went on.
    assert relay.messages[0] == b""
    assert b"<after@acme>" in relay.messages[1]


async def test_a_guard_that_says_no_after_354_leaves_nothing_delivered(relay: ScriptedRelay) -> None:
    asked: list[int] = []

    def guard() -> bool:
        asked.append(1)
        return len(asked) < 2  # yes for the commands, no for the message

    pool = _pool(relay)
    try:
        with pytest.raises(DispatchCancelled):
            await pool.send_raw(SENDER, ["jane@example.com"], make_message(), guard=guard)
        await asyncio.sleep(0.1)
        assert relay.messages == []
        assert relay.aborted_in_data == 1
        # The next send opens a new session.
        await pool.send_raw(SENDER, ["jane@example.com"], make_message(message_id="<next@acme>"))
    finally:
        await pool.close()
    assert len(relay.messages) == 1
    assert pool.connections_opened == 2


async def test_lines_starting_with_a_dot_and_bare_line_feeds_reach_the_relay_as_smtp_requires(relay: ScriptedRelay) -> None:
    message = b"From: a@acme.example\r\nTo: jane@example.com\r\nSubject: dots\r\n\r\n.hidden\nline two\r\n..two dots"
    rendered = b"From: a@acme.example\r\nTo: jane@example.com\r\nSubject: dots\r\n\r\n.hidden\r\n.\r\n"
    pool = _pool(relay)
    try:
        await pool.send_raw(SENDER, ["jane@example.com"], message)
        # Known CRLF (the skeleton's output): not rewritten, but its dots are still doubled.
        await pool.send_raw(SENDER, ["jane@example.com"], rendered, crlf=True)
    finally:
        await pool.close()
    assert relay.messages == [
        b"From: a@acme.example\r\nTo: jane@example.com\r\nSubject: dots\r\n\r\n..hidden\r\nline two\r\n...two dots\r\n",
        b"From: a@acme.example\r\nTo: jane@example.com\r\nSubject: dots\r\n\r\n..hidden\r\n..\r\n",
    ]
