"""The contact page's buttons: each records one audited event in the consent ledger.

    POST /desk/contacts/{external_id}/events   form=marketing|consent|block|reauth|review,
                                               action=<a ledger action of that form>,
                                               method, note, and the form's fields

The event is checked and appended exactly as the consent-events API does
(engine/api/consent_api.py `append_events`: the consent file's row checks, then
engine.imports.record_events, so projections and webhooks follow), with the desk user as
the actor and the moment of the click as `occurred_at`. Writers of one contact are
serialised (engine/api/choices.py `locked_recipient`), so a double click cannot record
what the first click already changed.

The marketing buttons keep the API's `marketing_opt_in` meaning: an opt_out or opt_in is
recorded only when it changes the contact's state; the page shows the one that would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from engine.api.auth import Permission
from engine.api.choices import locked_recipient
from engine.api.consent_api import append_events, count_recorded
from engine.api.contact_views import find_contact
from engine.api.recipients import Recipient
from engine.db.tenants import load_tenant
from engine.desk.contact_forms import FORMS
from engine.desk.contacts import contact_context
from engine.desk.guard import DeskView, desk_view, redirect
from engine.errors import InputErrors, NotFoundError
from engine.timeutil import from_us

__all__ = ["routes"]

routes = web.RouteTableDef()

_FIELDS = ("channel", "class", "party", "address", "method", "note")
_MAX_NOTE = 2000


def _event(form_name: str, action: str, values: dict[str, str], now_us: int) -> dict[str, Any]:
    """The consent-event object (the API's body) a button records."""
    item: dict[str, Any] = {
        "action": action, "method": values["method"] or None, "note": values["note"] or None,
        "occurred_at": from_us(now_us).isoformat(),
    }
    form = FORMS[form_name]
    for name in form.fields:
        item[name] = values[name] or None
    if form_name == "reauth":
        # Seed 002's "Text Reauth": a new SMS grant, which restarts the reauthorization
        # period (rule 9) and ends the opt-in wait (rule 4).
        item.update(channel="sms", party="first", note=values["note"] or "texting reauthorized")
    return item


@routes.post("/desk/contacts/{external_id}/events")
@desk_view(Permission.RECORD_CONSENT)
async def record(request: web.Request, view: DeskView) -> web.Response:
    external_id = request.match_info["external_id"]
    posted = await request.post()
    form_name, action = str(posted.get("form", "")), str(posted.get("action", ""))
    form = FORMS.get(form_name)
    if form is None or action not in form.actions:
        return view.page("not_found.html", {}, status=404)
    values = {name: str(posted.get(name, "")).strip() for name in _FIELDS}
    caller, now = view.caller, view.services.clock()
    location = f"/desk/contacts/{quote(external_id, safe='')}"
    errors: dict[str, str] = {}
    if len(values["note"]) > _MAX_NOTE:
        errors["note"] = f"A note is at most {_MAX_NOTE} characters."
    else:
        try:
            async with view.services.engine.connect() as conn:
                tenant = await load_tenant(conn, caller.tenant_code)
                row = await find_contact(conn, caller.tenant_id, external_id)
            recipient = Recipient(tenant, row.id, row.external_id, row.first_name, "email", None, None)
            async with locked_recipient(view.services.engine, recipient) as conn:
                contact = await find_contact(conn, caller.tenant_id, external_id)
                if action in ("opt_in", "opt_out") and bool(contact.opted_out) == (action == "opt_out"):
                    return redirect(f"{location}?done=unchanged")
                recorded = await append_events(
                    conn, caller, contact, [_event(form_name, action, values, now)], now, located=False
                )
        except NotFoundError:
            return view.page("not_found.html", {}, status=404)
        except InputErrors as exc:
            shown = (*form.fields, "method", "note")
            for error in exc.errors:
                errors.setdefault(error.field if error.field in shown else "form", error.message)
    if errors:
        context = await contact_context(
            view, external_id, {"review": "later"}, form_errors={form_name: errors}, form_values={form_name: values}
        )
        # A refused "still right" on the review prompt comes back to the prompt.
        template = "contact_review.html" if form_name == "review" and context["review"].overdue else "contact.html"
        return view.page(template, context, status=422)
    count_recorded(view.services.instruments, caller, recorded)
    return redirect(f"{location}?done={action}")
