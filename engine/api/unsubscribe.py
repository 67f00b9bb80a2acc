"""One-click unsubscribe (RFC 8058): GET and POST /u/{token}.

What "unsubscribe" records (docs/api.md, "Unsubscribe"): one `revoke` of channel = the
link's channel, class `*`, party `*`, on the address the message went to, method
`email_link` (`unsubscribe_link` for other channels), actor `recipient`. Not a `block` —
that would also stop the individual replies the person may still want (DESIGN.md 1) — and
not an `opt_out`, which would reach across channels the person did not unsubscribe from.

- GET shows a confirmation page and records nothing: mail scanners and link previews
  fetch every URL in a message, and a GET that unsubscribed would unsubscribe everybody.
- POST with `List-Unsubscribe=One-Click` (what mailbox providers send, and what the
  confirmation page's button sends) records the revoke and shows the "unsubscribed" page.
  It needs no cookie and no login: the signed token is the authority.
- A second POST records nothing new: gating reads every class and party on that channel
  as revoked at the address, unless a grant came after the revoke.
- A token that does not verify → 404, nothing recorded.
"""

from __future__ import annotations

from aiohttp import web

from engine.api.choices import unsubscribe_everything
from engine.api.html import link_not_found, page_response
from engine.api.recipients import Recipient, mask_address, recipient_for_token
from engine.api.services import services
from engine.render import preferences_url

__all__ = ["ONE_CLICK", "routes"]

# RFC 8058 section 3.1: the POST body is exactly this key and value.
ONE_CLICK = ("List-Unsubscribe", "One-Click")

routes = web.RouteTableDef()


def _page_context(request: web.Request, recipient: Recipient) -> dict[str, object]:
    token = request.match_info["token"]
    return {
        "tenant_name": recipient.tenant.name,
        "channel": recipient.channel,
        "first_name": recipient.first_name or "",
        "address": mask_address(recipient.address),
        "preferences_url": preferences_url(services(request).settings.public_url, token),
    }


async def _recipient(request: web.Request) -> Recipient | None:
    shared = services(request)
    async with shared.engine.connect() as conn:
        return await recipient_for_token(conn, shared.token_secrets, request.match_info["token"])


@routes.get("/u/{token}")
async def confirm_page(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    return page_response("unsubscribe", _page_context(request, recipient))


@routes.post("/u/{token}")
async def one_click(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    form = await request.post()
    key, value = ONE_CLICK
    if str(form.get(key, "")).strip().lower() != value.lower():
        raise web.HTTPBadRequest(text=f"expected {key}={value} (RFC 8058)")
    shared = services(request)
    note = "one-click unsubscribe"
    if recipient.campaign_code:
        note += f" from campaign {recipient.campaign_code}"
    method = "email_link" if recipient.channel == "email" else "unsubscribe_link"
    counts = await unsubscribe_everything(shared.engine, recipient, shared.clock(), method=method, note=note)
    if counts:
        shared.instruments.record_ledger_events(recipient.tenant.code, counts)
    return page_response("unsubscribed", _page_context(request, recipient))

