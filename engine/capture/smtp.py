"""The SMTP capture server: a lean asyncio SMTP sink that records what it accepts.

A product feature (a dev mail catcher): `consentry capture smtp` lets a new user, the demo
and the tests see the real SMTP conversation of a campaign with no relay and no account.
Every accepted message becomes a line of `DIR/messages.jsonl` (engine/capture/store.py).

Why not aiosmtpd: its stream-based session costs about 0.6 ms of CPU per message, so the
server, not the sender, would set the pace of every benchmark and demo. This one is a plain
`asyncio.Protocol` with a line/data state machine (engine/capture/smtp_session.py): a reply
is one `write` per batch of pipelined commands, and the message is parsed once, by a reader
that only looks for what the store records (engine/capture/mime.py).

It speaks enough ESMTP for any client: EHLO/HELO (advertising PIPELINING, 8BITMIME,
SMTPUTF8, ENHANCEDSTATUSCODES, SIZE and AUTH PLAIN/LOGIN, which accepts any credentials so
a relay URL with a user and password also works against it), MAIL, RCPT, DATA (with
dot-unstuffing), RSET, NOOP, VRFY, HELP and QUIT, many messages per connection. No
STARTTLS: it listens on loopback.

Failure injection, settable at construction or at run time (tests flip them between
sends):

- `bounce`: addresses (or `@domain`) refused at RCPT with `550 5.1.1` (a hard bounce);
- `tempfail`: addresses (or `@domain`) refused at RCPT with `451 4.2.0`;
- `fail_every_n`: every Nth message gets `451 4.3.0` at the end of DATA and is not kept;
- `refuse`: every connection is closed at once, before the greeting, and setting it closes
  the open ones (a server that is down);
- `latency_ms`: added before every reply.

Deduplication by Message-ID: a message whose Message-ID was already accepted is answered
`250` but not stored again (`duplicates` counts them). A sender that crashed after handing
a message over but before recording it cannot know whether it arrived; resending with the
same Message-ID is the safe recovery, and mailbox providers (Gmail among them) collapse
such duplicates the same way. Messages without a Message-ID are never deduplicated.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from engine.capture.mime import summarize
from engine.capture.smtp_session import SmtpSession
from engine.capture.store import DEFAULT_DIR, CaptureStore, read_messages, utc_stamp

DEFAULT_PORT = 1025
DEFAULT_MAX_SIZE = 25 * 1024 * 1024  # what large providers accept; a campaign email is ~10 KB
# Message-IDs remembered for deduplication: memory stays bounded (about 100 bytes each)
# while covering far more than any in-doubt window.
DEDUPE_WINDOW = 1_000_000


def _normalise_addresses(addresses: Iterable[str]) -> set[str]:
    return {address.strip().lower() for address in addresses if address.strip()}


class SmtpCaptureServer:
    """An SMTP server on `host:port` (0 picks a free port) storing into `store_dir`.

    Use as `async with SmtpCaptureServer(port=0, store_dir=d) as srv:`; `srv.port` is the
    bound port, `srv.messages` the messages accepted since start (or `reset()`), newest
    last, each the store's dict plus `raw` (the message bytes as received), and
    `await srv.wait_for(n, timeout)` returns once `n` messages were accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: str | Any = DEFAULT_DIR,
        *,
        latency_ms: float = 0,
        bounce: Iterable[str] = (),
        tempfail: Iterable[str] = (),
        fail_every_n: int = 0,
        refuse: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        hostname: str = "consentry-capture",
        memory_limit: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.store = CaptureStore(store_dir)
        self.hostname = hostname
        self.max_size = max_size
        self.latency_ms = latency_ms
        self.bounce = bounce  # type: ignore[assignment]  # the setter normalises to a set
        self.tempfail = tempfail  # type: ignore[assignment]
        self.fail_every_n = fail_every_n
        self._refuse = refuse
        self._messages: deque[dict[str, Any]] = deque(maxlen=memory_limit)
        self._seen: OrderedDict[str, str] = OrderedDict()  # Message-ID -> queue id
        self.open_sessions: set[SmtpSession] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._server: asyncio.Server | None = None
        self._queue_prefix = secrets.token_hex(3).upper()
        self._queued = 0
        self.accepted = 0  # messages stored since start / reset
        self.duplicates = 0  # messages acknowledged but not stored again
        self.data_count = 0  # DATA transactions completed (drives fail_every_n)
        self.connections = 0  # connections accepted since start / reset

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> SmtpCaptureServer:
        self.store.open()
        for record in read_messages(self.store.directory):
            if record.get("channel") == "email" and record.get("message_id"):
                self._remember(record["message_id"], record.get("queue_id") or "")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SmtpSession(self), self.host, self.port, reuse_address=True, backlog=1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self.open_sessions):
                session.close()
            await self._server.wait_closed()
            self._server = None
        self.store.close()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> SmtpCaptureServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The `smtp://host:port` URL a transport uses to reach this server."""
        return f"smtp://{self.host}:{self.port}"

    # -- in-process API -------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Messages accepted since start (or reset), oldest first (the last `memory_limit`)."""
        return list(self._messages)

    @property
    def bounce(self) -> set[str]:
        """Addresses (or `@domain`) refused at RCPT with 550 5.1.1; assigning lower-cases them."""
        return self._bounce

    @bounce.setter
    def bounce(self, addresses: Iterable[str]) -> None:
        self._bounce = _normalise_addresses(addresses)

    @property
    def tempfail(self) -> set[str]:
        """Addresses (or `@domain`) refused at RCPT with 451; assigning lower-cases them."""
        return self._tempfail

    @tempfail.setter
    def tempfail(self, addresses: Iterable[str]) -> None:
        self._tempfail = _normalise_addresses(addresses)

    @property
    def refuse(self) -> bool:
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        """Going down also drops the open connections, as a crashed relay would."""
        self._refuse = value
        if value:
            for session in list(self.open_sessions):
                session.close()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` messages were accepted since start/reset; returns `messages`."""
        if self.accepted < count:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((count, waiter))
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"SMTP capture: {self.accepted} of {count} messages after {timeout} s"
                ) from None
        return self.messages

    def reset(self) -> None:
        """Forget messages, counters, Message-IDs and failure options (between tests).

        The store file is left alone: it is append-only.
        """
        self._messages.clear()
        self._seen.clear()
        self.accepted = self.duplicates = self.data_count = self.connections = 0
        self.latency_ms = 0
        self.bounce = set()
        self.tempfail = set()
        self.fail_every_n = 0
        self._refuse = False

    # -- used by sessions -----------------------------------------------------------------

    def recipient_reply(self, address: str) -> bytes | None:
        """The injected refusal for a recipient, or None to accept it."""
        lower = address.lower()
        domain = "@" + lower.rpartition("@")[2]
        if lower in self._bounce or domain in self._bounce or address in self._bounce:
            return b"550 5.1.1 <%s>: Recipient address rejected: User unknown" % _utf8(address)
        if lower in self._tempfail or domain in self._tempfail or address in self._tempfail:
            return b"451 4.2.0 <%s>: Recipient address temporarily unavailable" % _utf8(address)
        return None

    def accept(self, sender: str, recipients: list[str], raw: bytes) -> bytes:
        """Store one message (unless a duplicate); returns the final reply."""
        summary = summarize(raw)
        if summary.message_id is not None and summary.message_id in self._seen:
            self.duplicates += 1
            queue_id = self._seen[summary.message_id]
            return b"250 2.0.0 Ok: queued as %s (duplicate Message-ID, not stored again)" % queue_id.encode()
        # A random prefix per server and a counter: unique, and no getrandom() per message.
        self._queued += 1
        queue_id = f"{self._queue_prefix}{self._queued:07X}"
        record: dict[str, Any] = {
            "channel": "email",
            "to": ", ".join(recipients),
            "from": sender,
            "subject": summary.subject,
            "body": summary.text,
            "headers": summary.headers,
            "message_id": summary.message_id,
            "queue_id": queue_id,
            "size": len(raw),
            "received_at": utc_stamp(),
        }
        self.store.append(record)
        if summary.message_id is not None:
            self._remember(summary.message_id, queue_id)
        self._messages.append({**record, "raw": raw})
        self.accepted += 1
        if self._waiters:
            self._wake()
        return b"250 2.0.0 Ok: queued as %s" % queue_id.encode()

    def _remember(self, message_id: str, queue_id: str) -> None:
        self._seen[message_id] = queue_id
        if len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)

    def _wake(self) -> None:
        waiting = []
        for count, waiter in self._waiters:
            if waiter.done():
                continue
            if self.accepted >= count:
                waiter.set_result(None)
            else:
                waiting.append((count, waiter))
        self._waiters = waiting


def _utf8(address: str) -> bytes:
    return address.encode("utf-8", "surrogateescape")
