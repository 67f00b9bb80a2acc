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
| other RCPT / DATA 5xx (policy 5.7.x, mailbox full 5.2.2, content) | `PermanentError(block_cause=None)` |
| MAIL FROM or EHLO 5xx | `SenderRejected` |
| AUTH 5xx | `TransportAuthError` |
| refused, reset, closed, greeting not 220 | `TransportConnectionError` |
| no reply within `timeout` | `TransportTimeoutError` (in doubt if it was the data) |
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from engine.transports.base import EmailTransport
from engine.transports.errors import (
    DispatchCancelled,
    PermanentError,
    SenderRejected,
    TransientError,
    TransportAuthError,
    TransportConnectionError,
    TransportError,
    TransportTimeoutError,
)
from engine.transports.guarded import guard_writes

DEFAULT_TIMEOUT_S = 30.0
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to connect, parsed from `smtp://[user:pass@]host:port[?starttls=true]`.

    `smtps://` connects with TLS from the start (port 465). `starttls=true` requires the
    upgrade, `starttls=false` forbids it; without the parameter, aiosmtplib upgrades when
    the server offers STARTTLS.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP URL {url!r}: expected smtp://[user:pass@]host:port[?starttls=true]")
        query = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls"}
        if unknown:
            raise ValueError(f"SMTP URL {url!r}: unknown parameter {sorted(unknown)[0]!r}")
        start_tls: bool | None = None
        if "starttls" in query:
            if query["starttls"] not in _TRUE | _FALSE:
                raise ValueError(f"SMTP URL {url!r}: starttls must be true or false")
            start_tls = query["starttls"] in _TRUE
        use_tls = parts.scheme == "smtps"
        if use_tls and start_tls:
            raise ValueError(f"SMTP URL {url!r}: smtps:// is already TLS; drop starttls=true")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"SMTP URL {url!r}: bad port") from None
        if port is None:
            port = 465 if use_tls else 587 if start_tls else 25
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=False if use_tls else start_tls,
        )


class SmtpPool(EmailTransport):
    """Up to `size` reused SMTP sessions to one relay.

    `send_raw` may be called concurrently; at most `size` sends run at once, the others
    wait for a session. `timeout` bounds every connect and every command. `tls_context`
    replaces the default (system trust store) for STARTTLS / smtps.
    """

    def __init__(
        self,
        url: str,
        size: int = 4,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        max_messages_per_connection: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("SmtpPool size must be at least 1")
        self.settings = SmtpSettings.from_url(url)
        self.size = size
        self.timeout = timeout
        self.tls_context = tls_context
        self.local_hostname = local_hostname
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

    async def send_raw(self, sender: str, recipients: list[str], data: bytes, guard: Callable[[], bool] | None = None) -> str:
        """Send one message; returns the relay's acceptance text (e.g. `2.0.0 Ok: queued as X`).

        `guard`, when given, is asked after the relay accepted the envelope and right before
        DATA, the moment the message becomes the relay's: False aborts the transaction (RSET)
        and raises DispatchCancelled, nothing delivered. A runner that was frozen mid-
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
                raise error from exc
            session.sent += 1
            self._checkin(session)
            return reply

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipients: list[str], data: bytes, options: list[str],
        guard: Callable[[], bool] | None,
    ) -> str:
        """MAIL, RCPT for each recipient, the guard, DATA. Some refused recipients are fine;
        all refused raises SMTPRecipientsRefused, as aiosmtplib's sendmail does."""
        utf8 = "SMTPUTF8" in options
        encoding = "utf-8" if utf8 else "ascii"
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo(timeout=self.timeout)
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo(timeout=self.timeout)
        if utf8 and not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if client.supports_extension("size"):
            # RFC 1870: octets as transmitted, every line ending a CRLF.
            size = len(data) + data.count(b"\n") - data.count(b"\r\n")
            options = [f"size={size}", *options]
        await client.mail(sender, options=options, encoding=encoding, timeout=self.timeout)
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        try:
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding, timeout=self.timeout)
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
            if session.client.is_connected:
                return session
            session.discard()
        client = aiosmtplib.SMTP(
            hostname=self.settings.host,
            port=self.settings.port,
            username=self.settings.username,
            password=self.settings.password,
            use_tls=self.settings.use_tls,
            start_tls=self.settings.start_tls,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
        )
        try:
            await client.connect()
        except BaseException as exc:
            error = classify(exc, connecting=True)
            if error is None:
                raise
            raise error from exc
        self.connections_opened += 1
        guard_writes(client.protocol, lambda: self._guard)
        return _Session(client)

    def _checkin(self, session: _Session) -> None:
        limit = self.max_messages_per_connection
        if self._closed or not session.client.is_connected or (limit and session.sent >= limit):
            task = asyncio.get_running_loop().create_task(session.quit(self.timeout))
            self._quitting.add(task)
            task.add_done_callback(self._quitting.discard)
        else:
            self._idle.append(session)


class _Session:
    __slots__ = ("client", "sent")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.sent = 0

    def discard(self) -> None:
        self.client.close()

    async def quit(self, timeout: float) -> None:
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


def classify(exc: BaseException, connecting: bool = False) -> TransportError | None:
    """The transport error for an aiosmtplib (or socket) failure; None to let it propagate."""
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
