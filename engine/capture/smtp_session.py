"""One SMTP connection of the capture server: bytes in, a state machine, replies out.

Kept apart from the server (engine/capture/smtp.py), which owns the store, the failure
options and the counters; a session asks it what to answer at RCPT and at the end of DATA.

Reads land in one preallocated buffer per session (`asyncio.BufferedProtocol`): a plain
`Protocol` gets a fresh bytes object per read, which asyncio allocates at 256 KiB and
shrinks, and on this workload that showed up as three memory-mapping syscalls per message,
costing more than the SMTP state machine itself. Replies produced while handling one read
are written together (one `write` per batch of pipelined commands), after `latency_ms` if
the server injects latency. Message data is collected until CRLF.CRLF and dot-unstuffed
once, at the end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.capture.smtp import SmtpCaptureServer

# RFC 5321 4.5.3.1.4 allows 512 octets for a command line; SMTPUTF8 addresses may need more.
MAX_LINE = 4096
# Bytes asked of the kernel per read; a campaign email (~10 KB) arrives in one or two.
READ_SIZE = 64 * 1024

_COMMAND, _DATA, _AUTH_PLAIN, _AUTH_USER, _AUTH_PASSWORD = range(5)


def _parse_path(argument: str, keyword: str) -> tuple[str, list[str]] | None:
    """`FROM:<a@b> SIZE=10` -> ("a@b", ["SIZE=10"]); None when it is not well formed."""
    head, colon, rest = argument.partition(":")
    if not colon or head.strip().upper() != keyword:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        address, params = rest[1:end], rest[end + 1:].split()
    else:
        pieces = rest.split()
        if not pieces:
            return None
        address, params = pieces[0], pieces[1:]
    return address.strip(), params


class SmtpSession(asyncio.BufferedProtocol):
    """One SMTP connection: bytes in, a state machine, replies batched per read."""

    def __init__(self, server: SmtpCaptureServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.incoming = memoryview(bytearray(READ_SIZE))  # what the transport reads into
        self.buffer = bytearray()  # what is not consumed yet
        self.state = _COMMAND
        self.greeted = False
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.scanned = 0  # DATA: how far the end marker was searched for
        self.oversize = False
        self.out: list[bytes] = []
        self.close_after_reply = False
        self.closed = False
        self.pending: deque[tuple[float, bytes, bool]] = deque()  # replies held for latency
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- transport events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if server.refuse:
            self.closed = True
            transport.close()
            return
        server.open_sessions.add(self)
        server.connections += 1
        self.reply(b"220 %s ESMTP Consentry capture server ready" % server.hostname.encode())
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.open_sessions.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.incoming

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed or self.close_after_reply:
            return
        self.buffer += self.incoming[:nbytes]
        self.process()
        self.send()

    def data_received(self, data: bytes) -> None:
        """The same, for a caller that hands over bytes (a test, a non-buffered transport)."""
        if self.closed or self.close_after_reply:
            return
        self.buffer += data
        self.process()
        self.send()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    # -- replies --------------------------------------------------------------------------

    def reply(self, line: bytes) -> None:
        self.out.append(line + b"\r\n")

    def send(self) -> None:
        """Write the replies of this read as one batch, now or after the injected latency."""
        if not self.out or self.closed:
            return
        data, close = b"".join(self.out), self.close_after_reply
        self.out.clear()
        delay = self.server.latency_ms / 1000
        if delay <= 0 and not self.pending:
            self.transport.write(data)  # type: ignore[union-attr]
            if close:
                self.close()
            return
        # Replies keep their order even when the latency changes between them.
        due = max(self.loop.time() + delay, self.last_due)
        self.last_due = due
        self.pending.append((due, data, close))
        if self.timer is None:
            self.timer = self.loop.call_at(due, self._release)

    def _release(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.pending and self.pending[0][0] <= now and not self.closed:
            _, data, close = self.pending.popleft()
            self.transport.write(data)  # type: ignore[union-attr]
            if close:
                self.close()
        if self.pending and not self.closed:
            self.timer = self.loop.call_at(self.pending[0][0], self._release)

    # -- the state machine ----------------------------------------------------------------

    def process(self) -> None:
        buffer = self.buffer
        while buffer and not self.close_after_reply:
            if self.state == _DATA:
                if not self.read_data():
                    return
                continue
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > MAX_LINE:
                    buffer.clear()
                    self.reply(b"500 5.5.2 Error: line too long")
                return
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[:end + 1]
            text = line.decode("utf-8", "surrogateescape")
            if self.state == _COMMAND:
                self.command(text)
            else:
                self.auth_step(text)

    def read_data(self) -> bool:
        """Consume message data up to CRLF.CRLF; False when more bytes are needed."""
        buffer = self.buffer
        if not self.oversize and buffer.startswith(b".\r\n"):
            # The data starts with the end marker: an empty message. (A message line that
            # is just "." arrives stuffed as "..", so this cannot cut a real message.)
            raw = b""
            del buffer[:3]
        else:
            # The end marker includes the CRLF ending the last line of the message.
            found = buffer.find(b"\r\n.\r\n", max(0, self.scanned - 4))
            if found < 0:
                self.scanned = len(buffer)
                if len(buffer) > self.server.max_size + 5:
                    # Keep counting towards the end marker, not the bytes.
                    self.oversize = True
                    del buffer[:-5]
                    self.scanned = len(buffer)
                return False
            end = found + 2
            raw = bytes(buffer[:end])
            del buffer[:found + 5]
        self.state = _COMMAND
        self.scanned = 0
        # Dot-unstuffing (RFC 5321 4.5.2): the client doubled every leading dot.
        if b"\n." in raw:
            raw = raw.replace(b"\r\n..", b"\r\n.")
        if raw.startswith(b".."):
            raw = raw[1:]
        self.finish_message(raw)
        return True

    def finish_message(self, raw: bytes) -> None:
        server = self.server
        server.data_count += 1
        sender, recipients = self.sender or "", self.recipients
        self.sender, self.recipients = None, []
        if self.oversize or len(raw) > server.max_size:
            self.oversize = False
            self.reply(b"552 5.3.4 Error: message exceeds fixed maximum message size")
        elif server.fail_every_n and server.data_count % server.fail_every_n == 0:
            self.reply(b"451 4.3.0 Error: temporary failure (injected), try again later")
        else:
            self.reply(server.accept(sender, recipients, raw))

    def command(self, text: str) -> None:
        verb, _, argument = text.partition(" ")
        handler = _HANDLERS.get(verb.upper())
        if handler is None:
            self.reply(b"500 5.5.2 Error: command not recognized")
        else:
            handler(self, argument.strip())

    # -- commands -------------------------------------------------------------------------

    def ehlo(self, argument: str) -> None:
        if not argument:
            self.reply(b"501 5.5.4 Syntax: EHLO hostname")
            return
        self.greeted = True
        self.sender, self.recipients = None, []
        name = self.server.hostname.encode()
        self.reply(
            b"250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE %d"
            % (name, self.server.max_size)
        )

    def helo(self, argument: str) -> None:
        if not argument:
            self.reply(b"501 5.5.4 Syntax: HELO hostname")
            return
        self.greeted = True
        self.sender, self.recipients = None, []
        self.reply(b"250 %s" % self.server.hostname.encode())

    def mail(self, argument: str) -> None:
        if not self.greeted:
            self.reply(b"503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.sender is not None:
            self.reply(b"503 5.5.1 Error: nested MAIL command")
            return
        parsed = _parse_path(argument, "FROM")
        if parsed is None:
            self.reply(b"501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        address, params = parsed
        for param in params:
            key, _, value = param.partition("=")
            if key.upper() == "SIZE" and value.isdigit() and int(value) > self.server.max_size:
                self.reply(b"552 5.3.4 Error: message size exceeds fixed maximum message size")
                return
        self.sender = address
        self.reply(b"250 2.1.0 Ok")

    def rcpt(self, argument: str) -> None:
        if self.sender is None:
            self.reply(b"503 5.5.1 Error: need MAIL command")
            return
        parsed = _parse_path(argument, "TO")
        if parsed is None or not parsed[0]:
            self.reply(b"501 5.5.4 Syntax: RCPT TO:<address>")
            return
        address = parsed[0]
        refusal = self.server.recipient_reply(address)
        if refusal is not None:
            self.reply(refusal)
            return
        self.recipients.append(address)
        self.reply(b"250 2.1.5 Ok")

    def data(self, argument: str) -> None:
        if not self.recipients:
            self.reply(b"503 5.5.1 Error: need RCPT command")
            return
        self.state = _DATA
        self.scanned = 0
        self.reply(b"354 End data with <CR><LF>.<CR><LF>")

    def rset(self, argument: str) -> None:
        self.sender, self.recipients = None, []
        self.reply(b"250 2.0.0 Ok")

    def noop(self, argument: str) -> None:
        self.reply(b"250 2.0.0 Ok")

    def vrfy(self, argument: str) -> None:
        self.reply(b"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

    def help(self, argument: str) -> None:
        self.reply(b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY AUTH QUIT")

    def quit(self, argument: str) -> None:
        self.reply(b"221 2.0.0 Bye")
        self.close_after_reply = True

    def auth(self, argument: str) -> None:
        # Any credentials are accepted: the capture server stands in for a relay whose URL
        # may carry a user and password, and it only listens on loopback.
        if not self.greeted:
            self.reply(b"503 5.5.1 Error: send HELO/EHLO first")
            return
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism == "PLAIN":
            if initial:
                self.auth_step(initial)
            else:
                self.state = _AUTH_PLAIN
                self.reply(b"334 ")
        elif mechanism == "LOGIN":
            if initial:
                self.state = _AUTH_PASSWORD
                self.reply(b"334 UGFzc3dvcmQ6")  # "Password:"
            else:
                self.state = _AUTH_USER
                self.reply(b"334 VXNlcm5hbWU6")  # "Username:"
        else:
            self.reply(b"504 5.5.4 Error: unsupported authentication mechanism")

    def auth_step(self, text: str) -> None:
        if text == "*":
            self.state = _COMMAND
            self.reply(b"501 5.7.0 Error: authentication cancelled")
            return
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.state = _COMMAND
            self.reply(b"501 5.5.2 Error: cannot decode response")
            return
        if self.state == _AUTH_USER:
            self.state = _AUTH_PASSWORD
            self.reply(b"334 UGFzc3dvcmQ6")
            return
        self.state = _COMMAND
        self.reply(b"235 2.7.0 Authentication successful")


_HANDLERS = {
    "EHLO": SmtpSession.ehlo,
    "HELO": SmtpSession.helo,
    "MAIL": SmtpSession.mail,
    "RCPT": SmtpSession.rcpt,
    "DATA": SmtpSession.data,
    "RSET": SmtpSession.rset,
    "NOOP": SmtpSession.noop,
    "VRFY": SmtpSession.vrfy,
    "HELP": SmtpSession.help,
    "QUIT": SmtpSession.quit,
    "AUTH": SmtpSession.auth,
}
