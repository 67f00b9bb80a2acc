"""The SMS capture server: a loopback stand-in for Twilio's Messages API.

A product feature, like the SMTP one: point `CONSENTRY_TWILIO_URL` (or the official twilio
client's `client.api.base_url`) at it and every text a campaign sends is accepted the way
api.twilio.com accepts it, appended to `DIR/messages.jsonl`, listed at `GET /`, and
followed by signed status callbacks. Credentials are not checked: any Account SID and
Auth Token work.

Endpoints (the paths and fields of the 2010-04-01 API the official client uses):

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (`To`, `From` or
  `MessagingServiceSid`, `Body`, `StatusCallback`) → `201` and the Message resource;
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages.json` (`To`, `From`, `DateSent`,
  `DateSent>`, `DateSent<`, `PageSize`, `Page`) → a page, newest first;
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` → one Message;
- `POST /_capture/inbound` (`From`, `To`, `Body`, `Url`): simulate a text from a handset,
  delivered to `Url` as Twilio's signed inbound webhook;
- `GET  /` (HTML) and `GET /_capture/messages.json`: what the store holds (both channels).

Failure injection (constructor options, CLI flags, attributes settable at run time):
numbers in `unsubscribed` get `400` code 21610, in `invalid` (and anything not E.164)
21211, in `not_mobile` 21614; texts to numbers in `undelivered` are accepted, then reported
`undelivered` with error 30003 (unreachable handset) instead of `delivered`; every `fail_every_n`th create gets `fail_status` (503, or
429 to act as a rate limit); `latency_ms` delays every API response.

Like Twilio's Advanced Opt-Out, an inbound STOP (STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT)
makes later messages from that sender to that handset fail with 21610, and START (YES,
UNSTOP) lifts it. Status callbacks (`sent`, then `delivered`) and inbound webhooks carry
`X-Twilio-Signature`, computed with `twilio.request_validator.RequestValidator` and
`auth_token` exactly as Twilio signs them, so the receiving side validates them for real.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from engine.capture import twilio_api as api
from engine.capture.html import render_messages_page
from engine.capture.store import DEFAULT_DIR, CaptureStore, read_messages, utc_stamp
from engine.capture.webhooks import WebhookSender, inbound_params, status_params, twiml_messages
from engine.config import Settings

DEFAULT_PORT = 8025
# Messages kept for list/fetch/reconciliation (about 400 bytes each); older ones only
# remain in the store file.
HISTORY_LIMIT = 200_000
VIEW_LIMIT = 500

# Twilio's error for a handset the carrier could not reach (off, out of coverage).
UNREACHABLE = "30003"

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})

_DEFAULTS = Settings()


class SmsCaptureServer:
    """A Twilio-compatible HTTP server on `host:port` (0 picks a free port).

    Use as `async with SmsCaptureServer(port=0, store_dir=d) as srv:`; `srv.url` is the
    base URL for the client, `srv.messages` the outbound messages accepted since start (or
    `reset()`) in the store's shape, `await srv.wait_for(n, timeout)` waits for `n` of them,
    `srv.callbacks` / `await srv.wait_for_callbacks(n, timeout)` the status callbacks made.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: str | Any = DEFAULT_DIR,
        *,
        latency_ms: float = 0,
        unsubscribed: Iterable[str] = (),
        invalid: Iterable[str] = (),
        not_mobile: Iterable[str] = (),
        undelivered: Iterable[str] = (),
        fail_every_n: int = 0,
        fail_status: int = 503,
        auth_token: str | None = None,
        account_sid: str | None = None,
        memory_limit: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.store = CaptureStore(store_dir)
        self.latency_ms = latency_ms
        self.unsubscribed = set(unsubscribed)
        self.invalid = set(invalid)
        self.not_mobile = set(not_mobile)
        self.undelivered = set(undelivered)
        self.fail_every_n = fail_every_n
        self.fail_status = fail_status
        self.auth_token = auth_token or _DEFAULTS.twilio_auth_token
        self.account_sid = account_sid or _DEFAULTS.twilio_account_sid
        self.opted_out: set[tuple[str, str]] = set()  # (handset, sender) after an inbound STOP
        self._messages: deque[dict[str, Any]] = deque(maxlen=memory_limit)
        self._history: dict[str, api.Message] = {}  # sid -> message, in creation order
        self._by_to: dict[str, list[str]] = {}  # To -> sids, oldest first: lists filtered by To
        self.callbacks: list[dict[str, Any]] = []
        self.inbound: list[dict[str, Any]] = []
        self.accepted = 0
        self.create_calls = 0
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._webhooks = WebhookSender()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> SmsCaptureServer:
        self.store.open()
        self._load_history()
        app = web.Application()
        prefix = f"/{api.API_VERSION}/Accounts/{{account_sid}}"
        app.router.add_post(prefix + "/Messages.json", self._create)
        app.router.add_get(prefix + "/Messages.json", self._list)
        app.router.add_get(prefix + "/Messages/{sid}.json", self._fetch)
        app.router.add_post("/_capture/inbound", self._inbound)
        app.router.add_get("/_capture/messages.json", self._messages_json)
        app.router.add_get("/", self._view)
        # No access log: one line per API call would cost more than the call itself.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        await self._webhooks.start()
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()
        for _, _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> SmsCaptureServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the twilio client (`client.api.base_url`)."""
        return f"http://{self.host}:{self.port}"

    def _load_history(self) -> None:
        """Messages of earlier runs stay listable (a sender reconciling after a crash)."""
        for record in read_messages(self.store.directory):
            if record.get("channel") != "sms" or not record.get("sid"):
                continue
            try:
                created = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            self._keep(api.Message(
                sid=record["sid"], account_sid=record.get("account_sid") or self.account_sid,
                to=record.get("to", ""), from_=record.get("from", ""), body=record.get("body", ""),
                num_segments=int(record.get("num_segments") or 1),
                direction=record.get("direction") or "outbound-api", date_created=created,
                status="delivered", date_sent=created, date_updated=created,
                messaging_service_sid=record.get("messaging_service_sid"),
            ))

    # -- in-process API -------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Messages accepted since start (or reset), oldest first, as stored."""
        return list(self._messages)

    def status_of(self, sid: str) -> str | None:
        message = self._history.get(sid)
        return message.status if message else None

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` messages were accepted since start/reset."""
        await self._wait("messages", count, timeout)
        return self.messages

    async def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` status callbacks were attempted since start/reset."""
        await self._wait("callbacks", count, timeout)
        return list(self.callbacks)

    def reset(self) -> None:
        """Forget messages, callbacks, opt-outs, counters and failure options (between tests).

        The store file and the listable history are kept: Twilio does not forget either.
        """
        self._messages.clear()
        self.callbacks.clear()
        self.inbound.clear()
        self.opted_out.clear()
        self.accepted = self.create_calls = 0
        self.latency_ms = 0
        self.unsubscribed, self.invalid, self.not_mobile, self.undelivered = set(), set(), set(), set()
        self.fail_every_n, self.fail_status = 0, 503

    async def simulate_inbound(self, from_: str, to: str, body: str, url: str) -> dict[str, Any]:
        """A text from handset `from_` to our number `to`, posted to `url` as Twilio would."""
        return await self._deliver_inbound(from_, to, body, url)

    def _count(self, kind: str) -> int:
        return self.accepted if kind == "messages" else len(self.callbacks)

    async def _wait(self, kind: str, count: int, timeout: float) -> None:
        if self._count(kind) >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, count, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"SMS capture: {self._count(kind)} of {count} {kind} after {timeout} s"
            ) from None

    def _wake(self) -> None:
        waiting = []
        for kind, count, waiter in self._waiters:
            if waiter.done():
                continue
            if self._count(kind) >= count:
                waiter.set_result(None)
            else:
                waiting.append((kind, count, waiter))
        self._waiters = waiting

    # -- the Messages API -----------------------------------------------------------------

    async def _respond(self, status: int, body: dict[str, Any]) -> web.Response:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)  # the injected latency itself
        return web.json_response(body, status=status)

    async def _error(self, status: int, code: int, message: str) -> web.Response:
        return await self._respond(status, api.error_body(status, code, message))

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.create_calls += 1
        if self.fail_every_n and self.create_calls % self.fail_every_n == 0:
            status = self.fail_status
            code = api.TOO_MANY_REQUESTS if status == 429 else (
                api.SERVICE_UNAVAILABLE if status == 503 else api.INTERNAL_ERROR)
            return await self._error(status, code, "Injected failure: try again later")
        to = str(form.get("To", "")).strip()
        sender = str(form.get("From", "")).strip()
        service = str(form.get("MessagingServiceSid", "")).strip() or None
        body = str(form.get("Body", ""))
        if not to:
            return await self._error(400, api.MISSING_TO, "A 'To' phone number is required.")
        if not sender and not service:
            return await self._error(400, api.MISSING_FROM, "A 'From' phone number is required.")
        if not body:
            return await self._error(400, api.MISSING_BODY, "Message body is required.")
        if len(body) > api.MAX_BODY:
            return await self._error(400, api.BODY_TOO_LONG,
                                     "The concatenated message body exceeds the 1600 character limit.")
        if to in self.invalid or not api.is_e164(to):
            return await self._error(400, api.INVALID_TO, f"The 'To' number {to} is not a valid phone number.")
        if to in self.not_mobile:
            return await self._error(400, api.NOT_MOBILE, f"'To' number {to} is not a valid mobile number")
        if to in self.unsubscribed or (to, sender) in self.opted_out:
            return await self._error(400, api.UNSUBSCRIBED, "Attempt to send to unsubscribed recipient")
        message = api.Message(
            sid=api.new_sid(), account_sid=request.match_info["account_sid"], to=to,
            from_=sender or service or "", body=body, num_segments=api.count_segments(body),
            direction="outbound-api", date_created=datetime.now(UTC),
            messaging_service_sid=service,
            status_callback=str(form.get("StatusCallback", "")).strip() or None,
        )
        self._accept(message)
        response = await self._respond(201, message.to_json())
        self._advance(message)
        return response

    async def _list(self, request: web.Request) -> web.Response:
        query = api.ListQuery.from_params(request.query)
        account_sid = request.match_info["account_sid"]
        if query.to is not None:
            history = self._history
            candidates = [history[sid] for sid in reversed(self._by_to.get(query.to, ())) if sid in history]
        else:
            candidates = list(reversed(self._history.values()))
        matching = [
            message for message in candidates
            if message.account_sid == account_sid and query.matches(message)
        ]
        return await self._respond(200, api.list_page(account_sid, query, matching))

    async def _fetch(self, request: web.Request) -> web.Response:
        message = self._history.get(request.match_info["sid"])
        if message is None or message.account_sid != request.match_info["account_sid"]:
            return await self._error(404, api.NOT_FOUND,
                                     f"The requested resource {request.path} was not found")
        return await self._respond(200, message.to_json())

    def _accept(self, message: api.Message) -> None:
        record = {
            "channel": "sms",
            "to": message.to,
            "from": message.from_,
            "body": message.body,
            "sid": message.sid,
            "num_segments": message.num_segments,
            "direction": message.direction,
            "account_sid": message.account_sid,
            "received_at": utc_stamp(message.date_created),
        }
        if message.messaging_service_sid:
            record["messaging_service_sid"] = message.messaging_service_sid
        if message.status_callback:
            record["status_callback"] = message.status_callback
        self.store.append(record)
        self._keep(message)
        self._messages.append(record)
        self.accepted += 1
        if self._waiters:
            self._wake()

    def _keep(self, message: api.Message) -> None:
        self._history[message.sid] = message
        self._by_to.setdefault(message.to, []).append(message.sid)
        if len(self._history) > HISTORY_LIMIT:
            oldest = self._history.pop(next(iter(self._history)))
            sids = self._by_to[oldest.to]
            sids.remove(oldest.sid)  # the oldest of its number too: at the front
            if not sids:
                del self._by_to[oldest.to]

    # -- status callbacks -----------------------------------------------------------------

    def _advance(self, message: api.Message) -> None:
        """queued → sent → delivered (or undelivered), announcing each step to the
        StatusCallback URL."""
        now = datetime.now(UTC)
        message.status, message.date_sent, message.date_updated = "sent", now, now
        if message.status_callback is None:
            if message.to in self.undelivered:
                message.status, message.error_code = "undelivered", UNREACHABLE
            else:
                message.status = "delivered"
            return
        self._spawn(self._report_status(message))

    async def _report_status(self, message: api.Message) -> None:
        await self._post_status(message)
        if message.to in self.undelivered:
            message.status, message.error_code = "undelivered", UNREACHABLE
        else:
            message.status = "delivered"
        message.date_updated = datetime.now(UTC)
        await self._post_status(message)

    async def _post_status(self, message: api.Message) -> None:
        url = message.status_callback or ""
        outcome = await self._webhooks.post(url, status_params(message), self.auth_token)
        self.callbacks.append({"sid": message.sid, "status": message.status, "url": url, **outcome})
        if self._waiters:
            self._wake()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- inbound messages -----------------------------------------------------------------

    async def _inbound(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            fields = await request.json()
        else:
            fields = await request.post()
        missing = [name for name in ("From", "To", "Body", "Url") if not fields.get(name)]
        if missing:
            return web.json_response({"error": f"missing fields: {', '.join(missing)}"}, status=400)
        result = await self._deliver_inbound(
            str(fields["From"]), str(fields["To"]), str(fields["Body"]), str(fields["Url"]))
        return web.json_response(result, status=200 if "error" not in result else 502)

    async def _deliver_inbound(self, from_: str, to: str, body: str, url: str) -> dict[str, Any]:
        keyword = body.strip().upper()
        if keyword in STOP_WORDS:
            self.opted_out.add((from_, to))
        elif keyword in START_WORDS:
            self.opted_out.discard((from_, to))
        sid = api.new_sid()
        params = inbound_params(self.account_sid, sid, from_, to, body)
        outcome = await self._webhooks.post(url, params, self.auth_token)
        replies = []
        if outcome.get("http_status") == 200:
            for text in twiml_messages(outcome.get("body", "")):
                reply = api.Message(
                    sid=api.new_sid(), account_sid=self.account_sid, to=from_, from_=to, body=text,
                    num_segments=api.count_segments(text), direction="outbound-reply",
                    date_created=datetime.now(UTC),
                )
                self._accept(reply)
                self._advance(reply)
                replies.append(reply.sid)
        result = {"sid": sid, "from": from_, "to": to, "body": body, "url": url, **outcome, "replies": replies}
        self.inbound.append(result)
        return result

    # -- what was captured ----------------------------------------------------------------

    async def _messages_json(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        try:
            limit = int(request.query.get("limit", "0")) or None
        except ValueError:
            limit = None
        messages = self.store.read(limit)
        if channel:
            messages = [message for message in messages if message.get("channel") == channel]
        return web.json_response({"messages": messages})

    async def _view(self, request: web.Request) -> web.Response:
        messages = self.store.read(VIEW_LIMIT)
        statuses = {
            record["sid"]: self._history[record["sid"]].status
            for record in messages if record.get("sid") in self._history
        }
        html = render_messages_page(messages, self.store.path, statuses)
        return web.Response(text=html, content_type="text/html")

