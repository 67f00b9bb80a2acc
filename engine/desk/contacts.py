"""The address book and the contact page (docs/desk.md, "Contacts and replies").

    GET /desk/contacts?q=&after=         search by name, email, phone or external id
    GET /desk/contacts/{external_id}     addresses, ledger timeline, consent grid, explain
                                         table, the buttons that record consent events

Every fact on these pages is the JSON API's: the search is `contact_page`, the contact and
its consent grid `contact_json` (gating's `channel_choices`), the timeline `ledger_page`,
the explain table `explain_contact`, and whether the review is due gating's `review_due`.
Nothing here reads the ledger itself. The buttons post to engine/desk/contact_actions.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from engine.api.auth import Permission
from engine.api.choices import load_review_due
from engine.api.contact_views import (
    CONSENT_CHANNELS,
    contact_json,
    contact_page,
    find_contact,
    ledger_page,
)
from engine.api.recipients import Recipient
from engine.db.tenants import TenantRecord, load_tenant
from engine.desk.contact_forms import FORMS, METHODS, ReviewState, review_state
from engine.desk.guard import DeskView, desk_view
from engine.errors import InputError, NotFoundError
from engine.gate.explain import explain_contact
from gating.message import CHANNELS as EVENT_CHANNELS
from gating.message import PARTIES

__all__ = ["contact_context", "routes"]

routes = web.RouteTableDef()

PAGE_SIZE = 25
LEDGER_PAGE = 50
MAX_QUERY = 320  # as the API's ?q=
EXPLAIN_KINDS = ("bulk", "individual")


def _cursor(value: str | None) -> int | None:
    """A keyset cursor from the URL; anything but a positive integer starts from the top."""
    return int(value) if value and value.isdigit() and len(value) < 19 else None


@routes.get("/desk/contacts")
@desk_view(Permission.READ_CONTACTS)
async def search(request: web.Request, view: DeskView) -> web.Response:
    q = request.query.get("q", "")
    after = _cursor(request.query.get("after"))
    if len(q) > MAX_QUERY:
        return view.page("contacts.html", {
            "q": q, "contacts": [], "next_url": None, "searched": False,
            "error": f"A search is at most {MAX_QUERY} characters.",
        }, status=422)
    async with view.services.engine.connect() as conn:
        contacts, next_after = await contact_page(conn, view.caller.tenant_id, q, PAGE_SIZE, after)
    next_url = None
    if next_after is not None:
        next_url = "/desk/contacts?" + urlencode({"q": q, "after": next_after})
    return view.page("contacts.html", {
        "q": q, "contacts": contacts, "next_url": next_url, "searched": bool(q.strip()) or after is not None,
        "error": None,
    })


@routes.get("/desk/contacts/{external_id}")
@desk_view(Permission.READ_CONTACTS)
async def show(request: web.Request, view: DeskView) -> web.Response:
    external_id = request.match_info["external_id"]
    try:
        context = await contact_context(view, external_id, request.query)
    except NotFoundError:
        return view.page("not_found.html", {}, status=404)
    review: ReviewState = context["review"]
    if review.overdue and request.query.get("review") != "later":
        return view.page("contact_review.html", context)
    status = 422 if context["explain_errors"] else 200
    return view.page("contact.html", context, status=status)


async def contact_context(
    view: DeskView,
    external_id: str,
    query: Mapping[str, str],
    *,
    form_errors: Mapping[str, Mapping[str, str]] | None = None,
    form_values: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Everything the contact page shows, for the caller's tenant (NotFoundError for a
    contact of another tenant, or none). `form_errors` / `form_values`: a button's form
    that was refused, by form name, to show again with its messages."""
    caller, now = view.caller, view.services.clock()
    before = _cursor(query.get("before"))
    async with view.services.engine.connect() as conn:
        tenant = await load_tenant(conn, caller.tenant_code)
        row = await find_contact(conn, caller.tenant_id, external_id)
        contact = await contact_json(conn, tenant, external_id, now)
        events, next_before = await ledger_page(conn, caller.tenant_id, row.id, LEDGER_PAGE, before)
        recipient = Recipient(tenant, row.id, row.external_id, row.first_name, "email", None, None)
        due = await load_review_due(conn, recipient, now)
    explain_values, explain_errors, explanation = await _explanation(view, tenant, external_id, query, now)
    return {
        "contact": contact,
        "name": " ".join(part for part in (contact["first_name"], contact["last_name"]) if part) or external_id,
        "events": events,
        "older_url": f"?{urlencode({'before': next_before, 'review': 'later'})}" if next_before else None,
        "grid": _grid(contact["consent"]),
        "channels": CONSENT_CHANNELS,
        "review": review_state(due, now, tenant.policy.review_period_days),
        "explain": explain_values,
        "explain_errors": explain_errors,
        "explanation": explanation,
        "classes": list(tenant.policy.classes),
        "parties": PARTIES,
        "kinds": EXPLAIN_KINDS,
        "event_channels": EVENT_CHANNELS,
        "methods": METHODS,
        "forms": FORMS,
        "form_errors": form_errors or {},
        "form_values": form_values or {},
        "may_record": caller.may(Permission.RECORD_CONSENT),
        "may_reply": caller.may(Permission.SEND_REPLIES),
        "done": query.get("done", ""),
    }


def _grid(consent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The consent choices as rows of class x party with a cell per channel."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for choice in consent:
        key = (choice["class"], choice["party"])
        row = rows.setdefault(key, {"class": key[0], "party": key[1], "mode": choice["mode"], "cells": {}})
        row["cells"][choice["channel"]] = choice
    return list(rows.values())


async def _explanation(
    view: DeskView, tenant: TenantRecord, external_id: str, query: Mapping[str, str], now: int
) -> tuple[dict[str, str], dict[str, str], dict[str, Any] | None]:
    """The explain form's values, its errors by field, and the API's explanation (None until
    the form is submitted)."""
    classes = tuple(tenant.policy.classes)
    values = {
        "channel": query.get("channel", "email"),
        "class": query.get("class", classes[0] if classes else ""),
        "party": query.get("party", "first"),
        "kind": query.get("kind", "bulk"),
    }
    if "channel" not in query:
        return values, {}, None
    allowed = {"channel": CONSENT_CHANNELS, "class": classes, "party": PARTIES, "kind": EXPLAIN_KINDS}
    errors = {
        name: f"Choose one of: {', '.join(allowed[name])}." for name, value in values.items() if value not in allowed[name]
    }
    if errors:
        return values, errors, None
    try:
        result = await explain_contact(
            view.services.engine, view.caller.tenant_code, external_id, values["channel"], values["class"],
            values["party"], values["kind"], now,
        )
    except InputError as exc:
        return values, {"class": exc.message}, None
    return values, {}, result.as_dict()
