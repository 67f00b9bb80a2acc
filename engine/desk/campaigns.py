"""Campaign pages of the desk (docs/desk.md, "Campaigns").

    GET  /desk/campaigns                                   the tenant's campaigns, newest first
    GET  /desk/campaigns/{code}                            definition, counts, chart, recipients
    GET  /desk/campaigns/{code}/deliveries.csv             the API's export, as a download
    GET  /desk/campaigns/{code}/recipients/{external_id}   why this recipient got what it got
    POST /desk/campaigns/{code}/{launch|resume|pause|cancel}

The new-campaign form and the dry-run check: engine/desk/campaign_new.py. Counts are the
API's `status` (engine/send/report.py; remembered once finished, engine/desk/campaign_counts.py), the export is the API's stream, the buttons call
the API's lifecycle functions (engine/api/campaign_lifecycle.py), and an explanation is
engine/gate/explain.py's: the desk never decides anything about consent itself.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.auth import Permission
from engine.api.campaign_lifecycle import (
    TransitionRefused,
    cancel_campaign,
    pause_campaign,
    start_sending,
)
from engine.api.campaign_runs import runs
from engine.api.deliveries_api import stream_deliveries
from engine.db.states import CampaignStatus
from engine.desk.campaign_chart import bar_chart, count_rows
from engine.desk.campaign_counts import campaign_report, campaigns_progress
from engine.desk.campaign_reads import (
    campaigns_page,
    progress_of,
    recipient,
    recipients_page,
    sent_before,
)
from engine.desk.guard import DeskView, desk_view, redirect
from engine.gate.explain import explain_contact
from engine.send.launch import CampaignRecord, find_campaign
from engine.send.report import ExportFilter
from engine.timeutil import iso_z

__all__ = ["ACTIONS", "DONE", "routes"]

routes = web.RouteTableDef()
S = CampaignStatus

LIST_PAGE = 25
RECIPIENT_PAGE = 50
# The buttons a campaign shows, by status: only where the action changes something (the
# API accepts a few more, e.g. pausing a paused campaign again, as harmless repeats).
ACTIONS: dict[str, tuple[CampaignStatus, ...]] = {
    "launch": (S.DRAFT,),
    "pause": (S.RUNNING, S.INCOMPLETE, S.WAITING),
    "resume": (S.PAUSED, S.INCOMPLETE, S.WAITING),
    "cancel": (S.DRAFT, S.RUNNING, S.INCOMPLETE, S.WAITING, S.PAUSED),
}
# `?done=` after a POST: what the confirmation says.
DONE = {
    "created": "Saved as a draft. Check who it will reach, then launch it.",
    "launch": "Launched: sending has started.",
    "resume": "Resumed: sending the rest.",
    "pause": "Paused: nothing more is sent until it is resumed.",
    "cancel": "Cancelled: nothing more will be sent.",
}


def _cursor(request: web.Request, name: str) -> int | None:
    """A keyset cursor from the query; anything else than a row id is the first page."""
    text = request.query.get(name, "")
    return int(text) if text.isdigit() and len(text) <= 18 else None


async def _campaign(view: DeskView, code: str) -> CampaignRecord | None:
    async with view.services.engine.connect() as conn:
        return await find_campaign(conn, view.caller.tenant_id, code)


def _missing(view: DeskView) -> web.Response:
    return view.page("not_found.html", {}, status=404)


@routes.get("/desk/campaigns")
@desk_view(Permission.READ_CAMPAIGNS)
async def campaign_list(request: web.Request, view: DeskView) -> web.Response:
    async with view.services.engine.connect() as conn:
        rows, older = await campaigns_page(conn, view.caller.tenant_id, _cursor(request, "before"), LIST_PAGE)
        progress = await campaigns_progress(conn, view.caller.tenant_id, [row.id for row in rows])
    return view.page("campaigns.html", {
        "campaigns": [{"row": row, "progress": progress.get(row.id, progress_of({}))} for row in rows],
        "older": older, "first_page": _cursor(request, "before") is None,
        "may_create": view.caller.may(Permission.RUN_CAMPAIGNS),
    })


def definition_summary(record: CampaignRecord) -> dict[str, Any]:
    """What the campaign page shows of its definition (the launch snapshot)."""
    model = record.definition.model
    audience = {name: ", ".join(values) for name, values in model.audience.model_dump(exclude_none=True).items() if values}
    sender = model.sender
    return {
        "channel": model.channel, "kind": model.kind, "class": model.class_, "party": model.party,
        "template": model.template, "subject": model.subject or "",
        "sender": " ".join(part for part in (sender.name or "", f"<{sender.email}>" if sender.email else "",
                                             sender.phone or "") if part),
        "audience": audience, "rate": f"{model.rate.per_second:g} per second" if model.rate else "",
    }


@routes.get("/desk/campaigns/{code}")
@desk_view(Permission.READ_CAMPAIGNS)
async def campaign_page(request: web.Request, view: DeskView) -> web.Response:
    record = await _campaign(view, request.match_info["code"])
    if record is None:
        return _missing(view)
    report, counted_at_us = await campaign_report(view.services.engine, record, view.services.clock())
    rows = count_rows((d["decision"], d["reason"], d["count"]) for d in report["decisions"])
    reasons = sorted({row.reason for row in rows if row.reason})
    reason = request.query.get("reason") or None
    async with view.services.engine.connect() as conn:
        recipients, after = await recipients_page(
            conn, view.caller.tenant_id, record.id, reason, _cursor(request, "after"), RECIPIENT_PAGE
        )
    current = CampaignStatus(report["status"])
    may_run = view.caller.may(Permission.RUN_CAMPAIGNS)
    return view.page("campaign.html", {
        "code": record.code, "status": str(current), "definition": definition_summary(record),
        "progress": progress_of(report["states"]), "rows": rows,
        "chart": bar_chart(rows, f"Recipients of {record.code} per decision and reason"),
        "feedback": report["feedback"], "last_errors": report["last_errors"],
        "reasons": reasons, "reason": reason or "", "recipients": recipients, "after": after,
        "filtered_from_start": _cursor(request, "after") is None,
        "actions": [action for action, allowed in ACTIONS.items() if may_run and current in allowed],
        "may_check": view.caller.may(Permission.CHECK_CAMPAIGNS) and current == S.DRAFT,
        "done": DONE.get(request.query.get("done", ""), ""),
        "counted_at_us": counted_at_us, "live": current != S.FINISHED,
    })


@routes.get("/desk/campaigns/{code}/deliveries.csv")
@desk_view(Permission.READ_CAMPAIGNS)
async def deliveries_csv(request: web.Request, view: DeskView) -> web.StreamResponse:
    record = await _campaign(view, request.match_info["code"])
    if record is None:
        return _missing(view)
    return await stream_deliveries(request, view.services.engine, record,
                                   ExportFilter(reason=request.query.get("reason") or None))


@routes.get("/desk/campaigns/{code}/recipients/{external_id}")
@desk_view(Permission.READ_CAMPAIGNS)
async def recipient_explanation(request: web.Request, view: DeskView) -> web.Response:
    record = await _campaign(view, request.match_info["code"])
    if record is None:
        return _missing(view)
    async with view.services.engine.connect() as conn:
        row = await recipient(conn, view.caller.tenant_id, record.id, request.match_info["external_id"])
        seen = await sent_before(conn, view.caller.tenant_id, record.id, row) if row is not None else set()
    if row is None:
        return _missing(view)
    # By default the rules as they stood when the row was decided, under the policy the
    # campaign was launched with: what the runner saw. `?at=now` shows what they say today.
    now = request.query.get("at") == "now"
    at_us = view.services.clock() if now else row.updated_at_us
    model = record.definition.model
    result = await explain_contact(
        view.services.engine, view.caller.tenant_code, row.external_id, model.channel, model.class_, model.party,
        model.kind, at_us, policy_version=record.policy_version, seen_addresses=seen,
    )
    body = result.as_dict()
    return view.page("campaign_recipient.html", {
        "code": record.code, "row": row, "now": now, "at": iso_z(at_us), "explanation": body,
        "message": f"{model.kind} {model.channel} · {model.class_} · {model.party} party",
        "may_read_contacts": view.caller.may(Permission.READ_CONTACTS),
    })


@routes.post(r"/desk/campaigns/{code}/{action:launch|resume|pause|cancel}")
@desk_view(Permission.RUN_CAMPAIGNS)
async def campaign_action(request: web.Request, view: DeskView) -> web.Response:
    record = await _campaign(view, request.match_info["code"])
    if record is None:
        return _missing(view)
    action = request.match_info["action"]
    try:
        if action in ("launch", "resume"):
            await start_sending(view.services, runs(request), record, action)
        elif action == "pause":
            await pause_campaign(view.services, record)
        else:
            await cancel_campaign(view.services, record)
    except TransitionRefused as exc:
        return view.page("campaign_refused.html", {"code": record.code, "reason": str(exc)}, status=409)
    return redirect(f"/desk/campaigns/{record.code}?done={action}")
