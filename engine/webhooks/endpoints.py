"""The endpoint registry: a tenant's webhook URLs, what each wants, and how it fares.

An endpoint is a URL, the event types it receives and a signing secret that the server
generates (`whsec_...`) and shows once, when the endpoint is created. The URL must be
`https`; plain `http` only to a loopback address (127.0.0.0/8, ::1, localhost), for a
receiver on the same machine (tests, a local relay): anything else would carry consent
data and contact addresses in clear text. A URL with credentials in it is refused (they
would show in every listing); use the signature to authenticate us instead.

Every function takes the tenant's id: an endpoint of another tenant is "not found",
exactly like one that does not exist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import WebhookEndpoint, WebhookMessage
from engine.errors import InputError, InputErrors, NotFoundError
from engine.webhooks.events import EventType, parse_event_types
from engine.webhooks.signing import new_secret
from engine.webhooks.states import MessageState

__all__ = [
    "DeliveryRecord",
    "EndpointRecord",
    "create_endpoint",
    "delete_endpoint",
    "endpoint_deliveries",
    "get_endpoint",
    "list_endpoints",
    "validate_url",
]

_endpoints = WebhookEndpoint.__table__
_messages = WebhookMessage.__table__
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: int
    url: str
    event_types: tuple[str, ...]
    description: str | None
    created_at_us: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event's delivery to an endpoint: its state and its last attempt."""

    id: int
    event_id: str
    event_type: str
    state: str
    attempts: int
    created_at_us: int
    last_attempt_at_us: int | None
    last_status: int | None
    last_error: str | None
    next_attempt_at_us: int | None  # pending only
    delivered_at_us: int | None


def validate_url(url: object, field: str = "url") -> str:
    """The URL if an endpoint may have it (see the module doc), else an InputError."""
    if not isinstance(url, str) or not url.strip():
        raise InputError("required: the URL events are POSTed to", field=field)
    url = url.strip()
    if len(url) > MAX_URL:
        raise InputError(f"longer than {MAX_URL} characters", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise InputError(f"{url!r} is not a URL ({exc})", field=field) from None
    if parts.scheme not in ("https", "http") or not host:
        raise InputError(f"{url!r} is not an https URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise InputError("credentials in the URL are not allowed: receivers authenticate us by the signature",
                         field=field)
    if parts.fragment:
        raise InputError("a URL fragment is never sent: remove it", field=field)
    if parts.scheme == "http" and not _is_loopback(host):
        raise InputError(f"{url!r}: plain http is allowed only to a loopback address; use https", field=field)
    if _is_link_local(host):
        # Cloud metadata services live there (169.254.169.254): an endpoint pointed at one
        # would have the dispatcher fetch instance credentials. A CRM on a private network
        # (10/8, 192.168/16) is fine; a link-local address never is a receiver.
        raise InputError(f"{url!r}: a link-local address is not a webhook receiver", field=field)
    return url


def _is_link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False  # a name: resolved by the dispatcher, like any client would


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(row) -> EndpointRecord:  # noqa: ANN001
    return EndpointRecord(row.id, row.url, tuple(row.event_types.split()), row.description, row.created_at_us)


async def create_endpoint(
    conn: AsyncConnection, tenant_id: int, url: object, event_types: object, description: object, now_us: int,
) -> tuple[EndpointRecord, str]:
    """Register an endpoint; returns it and its signing secret (shown this once).
    Every invalid field is reported (InputErrors)."""
    errors: list[InputError] = []
    try:
        url = validate_url(url)
    except InputError as exc:
        errors.append(exc)
    types: list[EventType] = []
    if not isinstance(event_types, list) or not event_types:
        errors.append(InputError(f"required: a list of event types ({', '.join(EventType)})", field="event_types"))
    else:
        types, problems = parse_event_types(event_types)
        errors.extend(InputError(message, field=f"event_types[{index}]") for index, message in problems)
    if description is not None and (not isinstance(description, str) or len(description) > 200):
        errors.append(InputError("at most 200 characters of text", field="description"))
    if errors:
        raise InputErrors(errors)
    secret = new_secret()
    names = " ".join(sorted(t.value for t in types))
    endpoint_id = (
        await conn.execute(
            insert(_endpoints)
            .values(tenant_id=tenant_id, url=url, event_types=names, description=description, secret=secret,
                    created_at_us=now_us)
            .returning(_endpoints.c.id)
        )
    ).scalar_one()
    return EndpointRecord(endpoint_id, str(url), tuple(names.split()), description if isinstance(description, str) else None,
                          now_us), secret


async def list_endpoints(conn: AsyncConnection, tenant_id: int) -> list[EndpointRecord]:
    rows = await conn.execute(
        select(_endpoints).where(_endpoints.c.tenant_id == tenant_id, _endpoints.c.deleted_at_us.is_(None))
        .order_by(_endpoints.c.id)
    )
    return [_record(row) for row in rows]


async def get_endpoint(conn: AsyncConnection, tenant_id: int, endpoint_id: int) -> EndpointRecord:
    row = (
        await conn.execute(
            select(_endpoints).where(_endpoints.c.id == endpoint_id, _endpoints.c.tenant_id == tenant_id,
                                     _endpoints.c.deleted_at_us.is_(None))
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no webhook endpoint {endpoint_id}")
    return _record(row)


async def delete_endpoint(conn: AsyncConnection, tenant_id: int, endpoint_id: int, now_us: int) -> EndpointRecord:
    """Stop sending to an endpoint: it leaves the listing, what it had pending is
    cancelled, its history stays in the database."""
    record = await get_endpoint(conn, tenant_id, endpoint_id)
    await conn.execute(update(_endpoints).where(_endpoints.c.id == endpoint_id).values(deleted_at_us=now_us))
    await conn.execute(
        update(_messages)
        .where(_messages.c.tenant_id == tenant_id, _messages.c.endpoint_id == endpoint_id,
               _messages.c.state == MessageState.PENDING)
        .values(state=MessageState.CANCELLED, claim_token=None, claim_until_us=None)
    )
    return record


async def endpoint_deliveries(
    conn: AsyncConnection, tenant_id: int, endpoint_id: int, *, limit: int = 50, before: int | None = None,
    states: Iterable[str] = (),
) -> tuple[list[DeliveryRecord], dict[str, int]]:
    """An endpoint's deliveries, newest first (`before`: an id, the cursor of the next
    page), and how many there are in each state."""
    await get_endpoint(conn, tenant_id, endpoint_id)
    m = _messages.c
    query = select(m.id, m.event_id, m.event_type, m.state, m.attempts, m.created_at_us, m.last_attempt_at_us,
                   m.last_status, m.last_error, m.next_attempt_at_us, m.delivered_at_us).where(
        m.tenant_id == tenant_id, m.endpoint_id == endpoint_id)
    wanted = list(states)
    if wanted:
        query = query.where(m.state.in_(wanted))
    if before is not None:
        query = query.where(m.id < before)
    rows = await conn.execute(query.order_by(m.id.desc()).limit(limit))
    records = [
        DeliveryRecord(r.id, r.event_id, r.event_type, r.state, r.attempts, r.created_at_us, r.last_attempt_at_us,
                       r.last_status, r.last_error, r.next_attempt_at_us if r.state == MessageState.PENDING else None,
                       r.delivered_at_us)
        for r in rows
    ]
    counts = {state.value: 0 for state in MessageState}
    for state, n in await conn.execute(
        select(m.state, func.count()).where(m.tenant_id == tenant_id, m.endpoint_id == endpoint_id).group_by(m.state)
    ):
        counts[state] = n
    return records, counts
