"""Email transport: a small pool of reused aiosmtplib connections sending pre-rendered bytes.

Opening an SMTP session (TCP, greeting, EHLO, maybe STARTTLS and AUTH) costs several round
trips; a message on an open session costs four (MAIL, RCPT, DATA, the data). So the pool
keeps up to `size` sessions open and hands each send the most recently used idle one. A
session that broke (closed by the relay, reset, timed out) is dropped and replaced on the
next send; nothing is retried here, because only the caller knows whether a retry is safe
(the pipeline marks the delivery in doubt and resends with the same Message-ID).

Messages arrive as bytes, already rendered and signed (no EmailMessage objects, no
re-serialisation on the hot path).

How replies become errors (engine/transports/errors.py):

| reply | raised |
|---|---|
| 4xx anywhere, 421 | `TransientError` (the session is dropped after a 421) |
| RCPT 5xx with enhanced code 5.1.x (not 5.1.7/5.1.8) or 5.2.1 | `PermanentError(block_cause="hard_bounce")` |
| RCPT 550/551/553 without an enhanced code | `PermanentError(block_cause="hard_bounce")` |
| other RCPT / DATA 5xx (policy 5.7.x, mailbox full 5.2.2, content) | `PermanentError(block_cause=None)`; `policy_status` "5.7.x" for policy |
| MAIL FROM or EHLO 5xx | `SenderRejected` (stops the campaign) |
| AUTH 5xx, or AUTH not offered while the URL has credentials | `TransportAuthError` (stops) |
| the relay's certificate does not verify (CA, expiry, name) | `RelayCertificateError` (stops) |
| STARTTLS required and not offered; a TLS handshake the ends cannot agree on | `RelayTlsError` (stops) |
| refused, reset, closed, greeting not 220, TLS cut off mid-handshake | `TransportConnectionError` |
| no reply within the connection or command timeout | `TransportTimeoutError` (in doubt if it was the data) |

The failures marked "stops" carry a `stop_cause` and a plain-words `context` (whose
certificate, which user, which sender): the pipeline stops the campaign on them, leaving
its recipients pending for `campaign resume` (docs/sending.md, "Relay faults").
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import ssl
from collections.abc import Callable
from typing import cast

import aiosmtplib

from engine.config import SMTP_URL_VARIABLE, RelaySettings, TlsMode
from engine.transports.base import EmailTransport
from engine.transports.errors import (
    DispatchCancelled,
    PermanentError,
    RelayCertificateError,
    RelayTlsError,
    SenderRejected,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportError,
    TransportTimeoutError,
)
from engine.transports.guarded import guard_writes
from engine.transports.smtp_pipelining import PipelinedSession, angled

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# TLS failures that say the connection broke, not that the two ends cannot agree.
_BROKEN_TLS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


@functools.lru_cache(maxsize=16)
def tls_context_for(relay: RelaySettings) -> ssl.SSLContext:
    """The TLS context for a relay: its CA file or directory (else the system's trust store),
    its client certificate, hostname checking on. Built once per distinct settings: loading
    a CA bundle costs milliseconds, and every session of every pool can share the context.

    Files that cannot be read or parsed raise InputError naming the variable, so a send
    refuses to start (exit 2) rather than fail on each message.
    """
    from engine.errors import InputError

    for name, path, want_dir in (("CONSENTRY_SMTP_CA_FILE", relay.ca_file, False), ("CONSENTRY_SMTP_CA_DIR", relay.ca_dir, True),
                                 ("CONSENTRY_SMTP_CLIENT_CERT", relay.client_cert, False),
                                 ("CONSENTRY_SMTP_CLIENT_KEY", relay.client_key, False)):
        if path is not None and not (os.path.isdir(path) if want_dir else os.path.isfile(path)):
            raise InputError(f"{path}: no such {'directory' if want_dir else 'file'}", field=name)
    try:
        # With a CA file or directory, those alone are trusted (the system's store is not
        # loaded): a private relay's CA is all its certificate may chain to.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=relay.ca_file, capath=relay.ca_dir)
    except (ssl.SSLError, OSError) as exc:
        field = "CONSENTRY_SMTP_CA_FILE" if relay.ca_file else "CONSENTRY_SMTP_CA_DIR"
        raise InputError(f"{relay.ca_file or relay.ca_dir}: no PEM certificate could be loaded ({exc})", field=field) from None
    if relay.client_cert:
        try:
            context.load_cert_chain(relay.client_cert, relay.client_key)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(f"{relay.client_cert}: cannot load the client certificate and its key ({exc})",
                             field="CONSENTRY_SMTP_CLIENT_CERT") from None
    return context


class SmtpPool(EmailTransport):
    """Up to `size` reused SMTP sessions to one relay.

    `send_raw` may be called concurrently; at most `size` sends run at once, the others
    wait for a session. The relay's settings (a `RelaySettings`, or a URL parsed into one)
    say how to connect: TLS mode, trust, client certificate, EHLO name, the connection
    timeout (TCP, greeting, STARTTLS, AUTH) and the command timeout (each command after).
    `timeout`, when given, replaces both; `tls_context` replaces the one built from the
    settings; `local_hostname` the EHLO name.
    """

    def __init__(
        self,
        relay: RelaySettings | str,
        size: int = 4,
        timeout: float | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        max_messages_per_connection: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("SmtpPool size must be at least 1")
        self.relay = RelaySettings.parse(relay) if isinstance(relay, str) else relay
        self.size = size
        self.timeout = timeout if timeout is not None else self.relay.command_timeout_s
        self.connect_timeout = timeout if timeout is not None else self.relay.connect_timeout_s
        if tls_context is None and self.relay.tls != TlsMode.NONE:
            tls_context = tls_context_for(self.relay)
        self.tls_context = tls_context
        self.local_hostname = local_hostname or self.relay.ehlo_name
        self.max_messages_per_connection = max_messages_per_connection
        self._idle: list[_Session] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False
        self._quitting: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        # The guard of the send in progress, asked by every write on our sessions' sockets
        # (engine/transports/guarded.py): a session frozen between DATA and 354 must not
        # write the message once its sender lost the claim.
        self._guard: Callable[[], bool] | None = None
        self.connections_opened = 0

    async def send_raw(self, sender: str, recipients: list[str], data: bytes, guard: Callable[[], bool] | None = None,
                       *, crlf: bool = False) -> str:
        """Send one message; returns the relay's acceptance text (e.g. `2.0.0 Ok: queued as X`).

        `guard`, when given, is asked after the relay accepted the envelope and right before
        the message goes, the moment it becomes the relay's: False aborts the transaction
        (RSET; with PIPELINING, where DATA went with the envelope, the connection is dropped
        before the final dot) and raises DispatchCancelled, nothing delivered. A runner that was frozen mid-
        transaction and lost its claim meanwhile stops here instead of sending a duplicate.
        """
        if self._closed:
            raise RuntimeError("SmtpPool is closed")
        if not recipients:
            raise ValueError("send_raw needs at least one recipient")
        options = []
        if not data.isascii():
            options.append("BODY=8BITMIME")
        if not sender.isascii() or not all(address.isascii() for address in recipients):
            options.append("SMTPUTF8")
        async with self._slots:
            session = await self._checkout()
            self._guard = guard
            try:
                options = self._options(session.client, data, options, crlf)
                if session.pipelined is not None:
                    reply = await session.pipelined.transaction(sender, recipients, data, options, guard, self.timeout, crlf)
                else:
                    reply = await self._transaction(session.client, sender, recipients, data, options, guard)
            except DispatchCancelled:
                self._checkin(session)
                raise
            except BaseException as exc:
                error = classify(exc)
                if error is None or _breaks_session(exc):
                    session.discard()
                else:
                    self._checkin(session)
                if error is None:
                    raise
                raise self._explained(error, sender) from exc
            session.sent += 1
            self._checkin(session)
            return reply

    def _options(self, client: aiosmtplib.SMTP, data: bytes, options: list[str], crlf: bool) -> list[str]:
        """MAIL's parameters: SIZE when the relay takes it; SMTPUTF8 only when it offers it."""
        if "SMTPUTF8" in options and not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if client.supports_extension("size"):
            # RFC 1870: octets as transmitted, every line ending a CRLF.
            size = len(data) if crlf else len(data) + data.count(b"\n") - data.count(b"\r\n")
            return [f"size={size}", *options]
        return options

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipients: list[str], data: bytes, options: list[str],
        guard: Callable[[], bool] | None,
    ) -> str:
        """MAIL, RCPT for each recipient, the guard, DATA, one round trip each (a relay
        without PIPELINING). Some refused recipients are fine; all refused raises
        SMTPRecipientsRefused, as aiosmtplib's sendmail does."""
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        if client.is_ehlo_or_helo_needed:
            await self._greet(client, self.timeout)
        await self._mail(client, sender, options, encoding)
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        try:
            for recipient in recipients:
                try:
                    await self._rcpt(client, recipient, encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
            if len(refused) == len(recipients):
                raise aiosmtplib.SMTPRecipientsRefused(refused)
            if guard is not None and not guard():
                raise DispatchCancelled("the runner lost its claim before DATA; nothing was sent")
        except (aiosmtplib.SMTPRecipientsRefused, DispatchCancelled):
            await client.rset(timeout=self.timeout)
            raise
        response = await client.data(data, timeout=self.timeout)
        return response.message

    # MAIL and RCPT through `angled` (engine/transports/smtp_pipelining.py), the quoting
    # both paths share: aiosmtplib's `mail` / `rcpt` would parse every plain address again
    # with `email.utils.parseaddr` only to put it between angle brackets. Same command bytes
    # and the same errors as theirs (the session is greeted before the transaction).

    async def _mail(self, client: aiosmtplib.SMTP, sender: str, options: list[str], encoding: str) -> None:
        response = await client.execute_command(
            b"MAIL", b"FROM:" + angled(sender, encoding), *(option.encode("ascii") for option in options),
            timeout=self.timeout,
        )
        if response.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)

    async def _rcpt(self, client: aiosmtplib.SMTP, recipient: str, encoding: str) -> None:
        response = await client.execute_command(b"RCPT", b"TO:" + angled(recipient, encoding), timeout=self.timeout)
        if response.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)

    async def close(self) -> None:
        """QUIT every idle session (politely, bounded by `timeout`)."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit(self.timeout) for session in idle), *self._quitting,
                             return_exceptions=True)

    # -- sessions -------------------------------------------------------------------------

    async def _checkout(self) -> _Session:
        while self._idle:
            session = self._idle.pop()  # most recently used: least likely to have timed out
            if session.is_connected:
                return session
            session.discard()
        relay = self.relay
        # STARTTLS and AUTH are done here, not by aiosmtplib's connect(), so that each
        # failure is told apart by what we asked, never by the text of an exception.
        client = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            use_tls=relay.tls == TlsMode.IMPLICIT,
            start_tls=False,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
            timeout=self.connect_timeout,
        )
        try:
            await client.connect()
            await self._secure_and_log_in(client)
            if client.is_ehlo_or_helo_needed:
                await self._greet(client, self.connect_timeout)
        except BaseException as exc:
            client.close()
            error = exc if isinstance(exc, TransportError) else classify(exc, connecting=True)
            if error is None:
                raise
            raise self._explained(error) from exc
        self.connections_opened += 1
        session = _Session(client)
        if client.supports_extension("pipelining") and client.protocol is not None and client.protocol.transport is not None:
            # Two round trips a message instead of four (engine/transports/smtp_pipelining.py).
            session.pipelined = PipelinedSession(cast(asyncio.Transport, client.protocol.transport))
        else:
            guard_writes(client.protocol, lambda: self._guard)
        return session

    @staticmethod
    async def _greet(client: aiosmtplib.SMTP, timeout: float) -> None:
        """EHLO, or HELO for a relay that refuses it (and is still there)."""
        try:
            await client.ehlo(timeout=timeout)
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo(timeout=timeout)

    async def _secure_and_log_in(self, client: aiosmtplib.SMTP) -> None:
        relay, timeout = self.relay, self.connect_timeout
        if relay.tls == TlsMode.STARTTLS:
            await client.ehlo(timeout=timeout)
            if not client.supports_extension("starttls"):
                raise RelayTlsError(f"the relay does not offer STARTTLS, which {SMTP_URL_VARIABLE} requires",
                                    context="no TLS with the relay")
            await client.starttls(timeout=timeout)
        if relay.username is None:
            return
        if client.is_ehlo_or_helo_needed:
            await client.ehlo(timeout=timeout)
        if not client.supports_extension("auth"):
            hint = " (many relays offer AUTH only over TLS)" if relay.tls == TlsMode.NONE else ""
            raise TransportAuthError(f"the relay offers no AUTH on this connection{hint}",
                                     context=f"relay cannot take credentials for user {relay.username}")
        await client.login(relay.username, relay.password or "", timeout=timeout)

    def _explained(self, error: TransportError, sender: str | None = None) -> TransportError:
        """The error with its plain-words lead: whose certificate, which user, which sender."""
        if error.context is None:
            if isinstance(error, RelayCertificateError):
                error.context = f"relay certificate not trusted ({self.relay.trust})"
            elif isinstance(error, RelayTlsError):
                error.context = f"TLS with the relay {self.relay.host}:{self.relay.port} failed"
            elif isinstance(error, TransportAuthError) and self.relay.username is not None:
                error.context = f"relay refused credentials for user {self.relay.username}"
            elif isinstance(error, SenderRejected) and sender is not None:
                error.context = f"relay refused the sender {sender}"
        return error

    def _checkin(self, session: _Session) -> None:
        limit = self.max_messages_per_connection
        if self._closed or not session.is_connected or (limit and session.sent >= limit):
            task = asyncio.get_running_loop().create_task(session.quit(self.timeout))
            self._quitting.add(task)
            task.add_done_callback(self._quitting.discard)
        else:
            self._idle.append(session)


class _Session:
    __slots__ = ("client", "pipelined", "sent")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        # Set when the relay offers PIPELINING: it then owns the socket, aiosmtplib only
        # opened it.
        self.pipelined: PipelinedSession | None = None
        self.sent = 0

    @property
    def is_connected(self) -> bool:
        if self.pipelined is not None:
            return self.pipelined.is_connected
        return self.client.is_connected

    def discard(self) -> None:
        if self.pipelined is not None:
            self.pipelined.abort()
        self.client.close()

    async def quit(self, timeout: float) -> None:
        if self.pipelined is not None:
            await self.pipelined.quit(timeout)
            self.client.close()
            return
        try:
            if self.client.is_connected:
                await self.client.quit(timeout=timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.client.close()


def _breaks_session(exc: BaseException) -> bool:
    """After these the session cannot be trusted for the next message."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
        return True
    return isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                            aiosmtplib.SMTPConnectError, OSError, asyncio.CancelledError))


def is_hard_bounce(code: int, message: str) -> bool:
    """Does a 5xx reply to RCPT say that the address itself does not exist (RFC 3463)?"""
    if code < 500:
        return False
    enhanced = _ENHANCED.match(message)
    if enhanced is None:
        return code in (550, 551, 553)
    _, subject, detail = enhanced.groups()
    if subject == "1":
        return detail not in ("7", "8")  # 5.1.7 / 5.1.8 are about the sender's address
    return subject == "2" and detail == "1"  # 5.2.1: mailbox disabled


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failure, if any (aiosmtplib wraps implicit TLS's in
    SMTPConnectError; STARTTLS's arrive bare)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain, not a cycle; a few links at most
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify(exc: BaseException, connecting: bool = False) -> TransportError | None:
    """The transport error for an aiosmtplib (or socket) failure; None to let it propagate."""
    tls = _tls_failure(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        # Not transient: the same certificate fails the same way on every retry.
        return RelayCertificateError(f"certificate verify failed: {tls.verify_message or tls.reason}")
    if tls is not None and connecting and not isinstance(tls, _BROKEN_TLS):
        # The two ends cannot agree (protocol version, ciphers, a client certificate the
        # relay wants, smtps:// to a STARTTLS port): configuration, not bad luck.
        return RelayTlsError(f"handshake failed: {tls.reason or tls}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        first = refusals[0]
        if any(refusal.code < 500 for refusal in refusals):
            temporary = next(refusal for refusal in refusals if refusal.code < 500)
            return TransientError(_text(temporary.message, temporary.recipient), temporary.code)
        bounce = all(is_hard_bounce(refusal.code, refusal.message) for refusal in refusals)
        return PermanentError(_text(first.message, first.recipient), first.code,
                              "hard_bounce" if bounce else None)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        if exc.code < 500:
            return TransientError(_text(exc.message, exc.recipient), exc.code)
        return PermanentError(_text(exc.message, exc.recipient), exc.code,
                              "hard_bounce" if is_hard_bounce(exc.code, exc.message) else None)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return TransportConnectionError(f"relay greeting: {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code < 500:
            return TransientError(exc.message, exc.code)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return TransportAuthError(exc.message, exc.code)
        if isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPHeloError):
            return SenderRejected(exc.message, exc.code)
        return PermanentError(exc.message, exc.code)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
            return TransportConnectionError(exc.message)
        return TransportTimeoutError(exc.message)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return TransportConnectionError(exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentError(exc.message)
    if isinstance(exc, aiosmtplib.SMTPException):
        # e.g. "SMTP AUTH extension not supported by server": configuration, every message.
        return TransportAuthError(exc.message) if connecting else PermanentError(exc.message)
    if isinstance(exc, TimeoutError):
        return TransportTimeoutError(str(exc) or "timed out")
    if isinstance(exc, OSError):
        return TransportConnectionError(str(exc) or type(exc).__name__)
    if isinstance(exc, ValueError):
        # aiosmtplib refuses addresses it cannot send safely (CR/LF, bad syntax).
        return PermanentError(f"address refused before sending: {exc}")
    return None


def _text(message: str, recipient: str) -> str:
    return message if recipient in message else f"{message} (recipient {recipient})"
