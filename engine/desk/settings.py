"""/desk/settings: the tenant policy as a form, for admins and managers (docs/desk.md).

Saving builds the document PUT /api/v1/tenant/policy accepts and goes through the same
functions (engine/api/policy_api.py `policy_document`, `save_policy`): validated key by
key, stored as a new version recorded with the desk user's name and the clock's time. The
form carries the version it was opened on; a save on any other version is refused (the
API's If-Match), and the form is shown again with what was typed.

POST /desk/settings/preview measures the opt-in request and the STOP footer for the page's
script (JSON); without the script, the form's Preview button posts the whole form here and
the page comes back with the preview and nothing saved.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.auth import Permission
from engine.api.policy_api import StalePolicyError, policy_document, save_policy
from engine.db.tenants import load_tenant, policy_history
from engine.desk.guard import DeskView, desk_view, redirect
from engine.desk.settings_form import CHANNELS, MODES, FormErrors, SettingsForm, locate
from engine.desk.sms_preview import SAMPLE_AGENT, SAMPLE_FIRST_NAME, preview_sms
from engine.errors import InputError, InputErrors

__all__ = ["routes"]

routes = web.RouteTableDef()

_DONE = {
    "saved": "Saved as a new policy version.",
    "unchanged": "Nothing to save: the settings were already these.",
}



async def _show(view: DeskView, form: SettingsForm, version: int, *, errors: FormErrors | None = None,
                notice: str = "", stale: bool = False, status: int = 200) -> web.Response:
    async with view.services.engine.connect() as conn:
        tenant = await load_tenant(conn, view.caller.tenant_code)
        history = await policy_history(conn, tenant.id)
    preview = preview_sms(form.value("sms_opt_in_message"), form.value("sms_opt_out_footer"),
                          form.value("name") or tenant.name)
    context: dict[str, Any] = {
        "form": form, "values": form.values, "version": version, "current_version": tenant.policy_version,
        "errors": (errors or FormErrors({})).by_element, "summary": (errors or FormErrors({})).summary,
        "notice": notice, "stale": stale, "history": history, "preview": preview, "channels": CHANNELS,
        "modes": MODES, "dkim": tenant.document.get("dkim", []), "tenant_code": tenant.code,
        "sample_first_name": SAMPLE_FIRST_NAME, "sample_agent": SAMPLE_AGENT,
    }
    return view.page("settings.html", context, status=status)


@routes.get("/desk/settings")
@desk_view(Permission.WRITE_POLICY)
async def settings_page(request: web.Request, view: DeskView) -> web.Response:
    async with view.services.engine.connect() as conn:
        tenant = await load_tenant(conn, view.caller.tenant_code)
    return await _show(view, SettingsForm.from_policy(tenant.document), tenant.policy_version,
                       notice=_DONE.get(request.query.get("done", ""), ""))


def _version(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


@routes.post("/desk/settings")
@desk_view(Permission.WRITE_POLICY)
async def save_settings(request: web.Request, view: DeskView) -> web.Response:
    post = await request.post()
    form = SettingsForm.from_post(post)
    opened_on = _version(post.get("version"))
    shown_version = opened_on if opened_on is not None else -1
    if post.get("action") == "preview":
        return await _show(view, form, shown_version)
    errors: FormErrors | None = None
    stale = changed = False
    # The page is rendered after the transaction: nothing is held open while it is.
    async with view.services.engine.begin() as conn:
        tenant = await load_tenant(conn, view.caller.tenant_code)
        # Checked first (the lock comes with the save): a form opened on an older version
        # is out of date whatever else is wrong with it.
        stale = opened_on != tenant.policy_version
        if not stale:
            body, where, problems = form.policy_body(tenant.code, tenant.document.get("dkim", []))
            try:
                if problems:
                    raise InputErrors(problems)
                policy, source = policy_document(body, view.caller)
                _, changed = await save_policy(conn, view.caller, policy, source, view.services.clock,
                                               matches=lambda version: version == opened_on)
            except InputErrors as exc:
                errors = locate(exc.errors, where)
            except InputError as exc:
                errors = locate([exc], where)
            except StalePolicyError:
                stale = True
    if errors:
        return await _show(view, form, shown_version, errors=errors, status=422)
    if stale:
        return await _show(view, form, shown_version, stale=True, status=409)
    return redirect(f"/desk/settings?done={'saved' if changed else 'unchanged'}")


@routes.post("/desk/settings/preview")
@desk_view(Permission.WRITE_POLICY)
async def preview(request: web.Request, view: DeskView) -> web.Response:
    post = await request.post()
    text = {name: value if isinstance(value, str) else "" for name, value in post.items()}
    name = text.get("name", "").strip()
    if not name:
        async with view.services.engine.connect() as conn:
            name = (await load_tenant(conn, view.caller.tenant_code)).name
    measured = preview_sms(text.get("sms_opt_in_message", ""), text.get("sms_opt_out_footer", ""), name)
    return web.json_response(measured.as_json(), headers={"Cache-Control": "no-store"})
