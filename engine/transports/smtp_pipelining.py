"""One SMTP session's transactions with PIPELINING (RFC 2920): two round trips a message.

aiosmtplib sends each command and waits for its reply: MAIL, RCPT, DATA and the data are
four round trips, each a write, a wake-up, a reply parsed, a timeout armed and disarmed.
That is most of what the client spends on a message (docs/benchmarks.md, "Cheaper per
message"). A relay that advertises PIPELINING (Postfix, Exim, every large provider, our
capture server) accepts MAIL, RCPT and DATA in one write and answers them in order; the
message then follows 354 as before. aiosmtplib cannot do this: its protocol parses one
reply per command and drops bytes that arrive while no command is waiting, which pipelined
replies do.

So once aiosmtplib has opened the session (TCP, greeting, EHLO, STARTTLS, AUTH: the
intricate part, with its error classes), `PipelinedSession` takes over the socket
(`transport.set_protocol`) for the transactions and QUIT. It raises aiosmtplib's own
exceptions, so `engine.transports.smtp.classify` reads its failures exactly as it reads
aiosmtplib's. Relays that do not advertise PIPELINING keep aiosmtplib's command-by-command
path.

The claim guard keeps its two checks: every write asks it (as `guarded.py` does for
aiosmtplib's sessions), and it is asked once more between 354 and the message. A guard that
says no there cannot RSET (the relay is reading the message); the connection is aborted
before the final dot instead, which makes the relay discard what it has.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    normalize_message_line_endings,
)

from engine.transports.errors import DispatchCancelled

Guard = Callable[[], bool]
# An ASCII addr-spec with a dot-atom local part: what `parseaddr` returns unchanged, so
# `<address>` is exactly what aiosmtplib's quoting would send, without parsing it again
# (email.utils.parseaddr was a tenth of a message's client CPU).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_MAX_REPLY = 64 * 1024  # a relay that sends more than this for one reply is broken


class Reply:
    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message


class PipelinedSession(asyncio.Protocol):
    """The protocol of an open, greeted (and secured, logged-in) SMTP connection."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._replies: list[Reply] = []
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        # One timer for the session, moved lazily: each read only sets its deadline, and the
        # timer, when it fires early, re-arms itself for the latest one (a timer made and
        # cancelled per read was a few per cent of a message's CPU).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        transport.set_protocol(self)

    @property
    def is_connected(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {line!r}"))
                return
            self._lines.append(line[4:].strip(b" \t").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append(Reply(code, "\n".join(self._lines)))
                self._lines = []
        del buffer[:start]
        if len(buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        if self._waiter is not None and len(self._replies) >= self._wanted and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def _fail(self, error: BaseException) -> None:
        if self._lost is None:
            self._lost = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
            self._waiter.exception()  # retrieved: nobody may be waiting any more
        self._transport.abort()

    # -- commands ----------------------------------------------------------------------------

    def _write(self, data: bytes, guard: Guard | None) -> None:
        if self._lost is not None or self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        if guard is not None and not guard():
            self.abort()
            raise DispatchCancelled("the sender lost its claim before the message was written; nothing was sent")
        self._transport.write(data)

    async def _read(self, count: int, timeout: float) -> list[Reply]:
        """The next `count` replies, in order."""
        if len(self._replies) < count:
            if self._lost is not None:
                raise self._lost
            self._wanted = count
            self._waiter = self._loop.create_future()
            self._deadline = self._loop.time() + timeout
            if self._timer is None or self._timer.when() > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            try:
                await self._waiter
            finally:
                self._waiter = None
        replies, self._replies = self._replies[:count], self._replies[count:]
        return replies

    def _check_deadline(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # nothing waits: the next read arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        # The session cannot be trusted after a missed reply: replies would pair wrongly.
        self._fail(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))

    async def transaction(self, sender: str, recipients: list[str], data: bytes, options: list[str],
                          guard: Guard | None, timeout: float, crlf: bool = False) -> str:
        """MAIL, every RCPT and DATA in one write; the message after 354. Returns the relay's
        acceptance text. Raises what aiosmtplib's sendmail would, for the same replies."""
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        mail = _command(b"MAIL FROM:" + angled(sender, encoding), *(option.encode("ascii") for option in options))
        rcpts = [_command(b"RCPT TO:" + angled(recipient, encoding)) for recipient in recipients]
        self._write(b"".join((mail, *rcpts, b"DATA\r\n")), guard)
        replies = await self._read(len(recipients) + 2, timeout)
        mail_reply, data_reply = replies[0], replies[-1]
        refused = [
            aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            for recipient, reply in zip(recipients, replies[1:-1], strict=True)
            if reply.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward)
        ]
        failure: aiosmtplib.SMTPException | None = None
        if mail_reply.code != aiosmtplib.SMTPStatus.completed:
            failure = aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
        elif len(refused) == len(recipients):
            failure = aiosmtplib.SMTPRecipientsRefused(refused)
        if failure is not None:
            await self._abandon(data_reply, timeout)
            raise failure
        if data_reply.code != aiosmtplib.SMTPStatus.start_input:
            await self._abandon(data_reply, timeout)
            raise aiosmtplib.SMTPDataError(data_reply.code, data_reply.message)
        self._write(wire_body(data, crlf), guard)
        (reply,) = await self._read(1, timeout)
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply.message

    async def _abandon(self, data_reply: Reply, timeout: float) -> None:
        """End a refused transaction so the session can carry the next one: an empty message
        if the relay said 354 anyway (nobody to deliver it to), then RSET. Best effort: a
        relay gone meanwhile (a 421, a reset) must not replace the refusal the caller raises
        (a refused sender stops the campaign; a lost connection would only be retried), so
        the session is dropped instead."""
        try:
            if data_reply.code == aiosmtplib.SMTPStatus.start_input:
                self._write(b".\r\n", None)
                await self._read(1, timeout)
            await self._reset(timeout)
        except (aiosmtplib.SMTPException, OSError):
            self.abort()

    async def _reset(self, timeout: float) -> None:
        self._write(b"RSET\r\n", None)
        (reply,) = await self._read(1, timeout)
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)

    async def quit(self, timeout: float) -> None:
        try:
            if self.is_connected:
                self._write(b"QUIT\r\n", None)
                await self._read(1, timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection and what is buffered for it (mid-message: nothing delivered)."""
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection aborted"))


def angled(address: str, encoding: str) -> bytes:
    """`<address>` as aiosmtplib's `mail` / `rcpt` would write it."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return quote_address(address).encode(encoding)


def _command(*parts: bytes) -> bytes:
    command = b" ".join(parts)
    if COMMAND_INJECTION_REGEX.search(command):
        raise ValueError("Command arg contains a prohibited control character")
    return command + b"\r\n"


def wire_body(data: bytes, crlf: bool = False) -> bytes:
    """The message as DATA carries it: CRLF line endings, leading dots doubled, the final
    dot. What aiosmtplib does to every message, done only when the message needs it: ours
    come rendered with CRLF (`crlf`), and most have no line starting with a dot."""
    if not crlf:
        ends = data.count(b"\r\n")
        if data.count(b"\n") != ends or data.count(b"\r") != ends or not data.endswith(b"\r\n"):
            data = normalize_message_line_endings(data)
    if data.startswith(b".") or b"\n." in data:
        data = PERIOD_REGEX.sub(b"..", data)
    return data + b".\r\n"
