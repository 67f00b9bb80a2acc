"""A new campaign from a form, and the dry-run check before it is launched.

    GET  POST /desk/campaigns/new        the form; saving records a draft (the API's create)
    GET       /desk/campaigns/{code}/check   who the draft will reach, and why not the others

Saving validates exactly as `POST /api/v1/campaigns` does (the same function): bad input
re-renders the form, 422, with each message beside its input and everything typed kept;
nothing is recorded. A saved draft goes to its check, which is the API's check of a
recorded campaign (engine/gate/check.py: nothing is recorded, however often it runs), with
the Launch button beside the counts.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from engine.api.auth import Permission
from engine.api.campaign_lifecycle import CampaignCodeTaken, check_recorded, create_campaign
from engine.db.states import CampaignStatus
from engine.db.tenants import load_tenant
from engine.desk.campaign_chart import bar_chart, count_rows
from engine.desk.campaign_form import (
    FIELDS,
    FormErrors,
    definition_from_form,
    field_errors,
    template_choices,
)
from engine.desk.campaigns import DONE
from engine.desk.guard import DeskView, desk_view, redirect
from engine.errors import InputError, InputErrors
from engine.send.launch import find_campaign

__all__ = ["routes"]

routes = web.RouteTableDef()

DEFAULTS = {"channel": "email", "kind": "bulk", "class": "marketing", "party": "first"}


async def _form_page(view: DeskView, values: Mapping[str, str], errors: FormErrors, status: int = 200) -> web.Response:
    async with view.services.engine.connect() as conn:
        tenant = await load_tenant(conn, view.caller.tenant_code)
    return view.page("campaign_new.html", {
        "values": {name: values.get(name, "") for name in FIELDS},
        "errors": {name: errors.by_field.get(name, []) for name in FIELDS}, "general": errors.general,
        "problems": sum(len(messages) for messages in errors.by_field.values()) + len(errors.general), "classes": sorted(tenant.policy.classes), "templates": template_choices(),
    }, status=status)


@routes.get("/desk/campaigns/new")
@desk_view(Permission.RUN_CAMPAIGNS)
async def new_campaign_form(request: web.Request, view: DeskView) -> web.Response:
    return await _form_page(view, DEFAULTS, FormErrors())


@routes.post("/desk/campaigns/new")
@desk_view(Permission.RUN_CAMPAIGNS)
async def new_campaign(request: web.Request, view: DeskView) -> web.Response:
    posted = await request.post()
    values = {name: str(posted.get(name, "")) for name in FIELDS}
    body = definition_from_form(values, view.caller.tenant_code)
    try:
        record, _created = await create_campaign(view.services, view.caller, body)
    except InputErrors as exc:
        return await _form_page(view, values, field_errors(exc.errors, values["channel"]), status=422)
    except InputError as exc:
        return await _form_page(view, values, field_errors([exc], values["channel"]), status=422)
    except CampaignCodeTaken:
        taken = FormErrors({"campaign": ["a campaign with this code already exists with another definition: "
                                         "choose another code"]})
        return await _form_page(view, values, taken, status=409)
    # The same form sent twice (a double click) lands on the draft it made the first time.
    return redirect(f"/desk/campaigns/{record.code}/check?done=created")


@routes.get("/desk/campaigns/{code}/check")
@desk_view(Permission.CHECK_CAMPAIGNS)
async def campaign_check(request: web.Request, view: DeskView) -> web.Response:
    async with view.services.engine.connect() as conn:
        record = await find_campaign(conn, view.caller.tenant_id, request.match_info["code"])
    if record is None:
        return view.page("not_found.html", {}, status=404)
    report = await check_recorded(view.services, view.caller, record, view.services.clock())
    rows = count_rows((c["decision"], c["reason"], c["count"]) for c in report["counts"])
    return view.page("campaign_check.html", {
        "code": record.code, "status": report["status"], "at": report["at"], "total": report["total"], "rows": rows,
        "chart": bar_chart(rows, f"Check of {record.code}: recipients per decision and reason"),
        "may_launch": view.caller.may(Permission.RUN_CAMPAIGNS) and record.status == CampaignStatus.DRAFT,
        "done": DONE.get(request.query.get("done", ""), ""),
    })
