"""The preference centre: GET and POST /p/{token}.

What the page offers (seed 003, GDPR): messages from the tenant and from third parties, on
each channel (email, text messages, telephone calls, letters, social media) and of each
class of the tenant's policy that needs consent (exempt classes are not choices). A box is
ticked exactly when gating would let a bulk message of that class, party and channel
through the consent rules (engine/api/choices.py); with no event, an `opt_out` class is
ticked and an `opt_in` class is not, so an opt-in regime starts with everything unticked.

Saving records, for each box whose state changed, a `grant` or `revoke` of that class and
party on that channel, method `preference_centre`, actor `recipient`; on the link's own
channel at the link's address, on the others for the person (no address). Every event
carries the wording the person was shown (`wording_id`, `wording_version`; the text kept in
`consent_wordings`), so consent can be demonstrated. Each save also records a `review`: the
person has just looked at their preferences (rule 10).

The form: one `choices` value `party:channel:class` per ticked box, and one `shown` value
per box on the page, so a box not on the page is never changed. The link channel's
first-party boxes are named `channels` with the class code as value (the form before this
page had third parties and other channels); a POST with `channels` and no `shown` changes
only those, and an untick there revokes from every party, as that page promised.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from engine.api.choices import load_choices, locked_recipient, record, remember_wording
from engine.api.html import link_not_found, page_response
from engine.api.recipients import Recipient, recipient_for_token
from engine.api.services import services
from gating.message import CHANNELS, PARTIES
from gating.preferences import Choice

__all__ = ["WORDING_ID", "routes"]

routes = web.RouteTableDef()

WORDING_ID = "preference-centre"
LEGACY_FIELD = "channels"

_CHANNEL_LABELS = {
    "email": "Email",
    "sms": "Text messages",
    "voice": "Telephone calls",
    "letter": "Letters by post",
    "social": "Social media",
}


@dataclass(frozen=True, slots=True)
class Box:
    choice: Choice
    name: str  # the form field
    value: str
    label: str  # what a screen reader says for the box, and what the wording records

    @property
    def key(self) -> str:
        return f"{self.choice.party}:{self.choice.channel}:{self.choice.class_code}"


def _class_label(class_code: str) -> str:
    return class_code.replace("_", " ").replace("-", " ").capitalize()


def _party_legend(party: str, tenant_name: str) -> str:
    if party == "first":
        return f"Messages from {tenant_name}"
    return f"Messages from partners of {tenant_name} about their own products"


def _boxes(recipient: Recipient, choices: list[Choice]) -> list[Box]:
    boxes = []
    for choice in choices:
        legacy = choice.party == "first" and choice.channel == recipient.channel
        key = f"{choice.party}:{choice.channel}:{choice.class_code}"
        label = f"{_class_label(choice.class_code)} – {_CHANNEL_LABELS[choice.channel].lower()}"
        boxes.append(Box(choice, LEGACY_FIELD if legacy else "choices", choice.class_code if legacy else key, label))
    return boxes


def _wording(recipient: Recipient, boxes: list[Box]) -> str:
    """The words the page shows about consent, as plain text: what a grant agreed to."""
    tenant = recipient.tenant.name
    lines = [f"Your preferences at {tenant}", f"Choose which messages {tenant} may send you, and how."]
    for party in PARTIES:
        lines.append(_party_legend(party, tenant))
        lines += [f"[ ] {box.label}" for box in boxes if box.choice.party == party]
    lines.append("Untick a box to stop those messages. You will still receive messages you need, "
                 "such as replies to your own questions.")
    return "\n".join(lines)


def _page(recipient: Recipient, boxes: list[Box], ticked: set[str], saved: bool) -> web.Response:
    sections = []
    for party in PARTIES:
        rows = []
        for class_code, _mode in recipient.tenant.policy.classes.items():
            cells = [box for box in boxes if box.choice.party == party and box.choice.class_code == class_code]
            if cells:
                rows.append({"label": _class_label(class_code), "boxes": [
                    {"name": box.name, "value": box.value, "key": box.key, "label": box.label, "checked": box.key in ticked}
                    for box in cells
                ]})
        sections.append({"party": party, "legend": _party_legend(party, recipient.tenant.name), "rows": rows})
    return page_response(
        "preferences",
        {
            "tenant_name": recipient.tenant.name,
            "first_name": recipient.first_name or "",
            "channel_labels": [_CHANNEL_LABELS[channel] for channel in CHANNELS],
            "sections": sections,
            # The link channel's first-party boxes, as the page before third parties had them.
            "channels": [
                {"code": box.value, "label": box.label, "subscribed": box.key in ticked}
                for box in boxes if box.name == LEGACY_FIELD
            ],
            "saved": saved,
        },
    )


async def _recipient(request: web.Request) -> Recipient | None:
    shared = services(request)
    async with shared.engine.connect() as conn:
        return await recipient_for_token(conn, shared.token_secrets, request.match_info["token"])


@routes.get("/p/{token}")
async def show(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    shared = services(request)
    async with shared.engine.connect() as conn:
        boxes = _boxes(recipient, await load_choices(conn, recipient, shared.clock(), CHANNELS))
    return _page(recipient, boxes, {box.key for box in boxes if box.choice.consented}, saved=False)


@routes.post("/p/{token}")
async def save(request: web.Request) -> web.Response:
    recipient = await _recipient(request)
    if recipient is None:
        return link_not_found()
    form = await request.post()
    shown = {str(value) for value in form.getall("shown", ())}
    legacy = not shown
    wanted = {str(value) for value in form.getall("choices", ())}
    wanted |= {f"first:{recipient.channel}:{value}" for value in (*form.getall(LEGACY_FIELD, ()), *form.getall("classes", ()))}
    shared = services(request)
    now = shared.clock()
    async with locked_recipient(shared.engine, recipient) as conn:
        boxes = _boxes(recipient, await load_choices(conn, recipient, now, CHANNELS))
        version = await remember_wording(conn, recipient.tenant.id, WORDING_ID, _wording(recipient, boxes), now)
        events = [
            _choice(recipient, box.choice, want, legacy, version, now)
            for box in boxes
            if (box.name == LEGACY_FIELD if legacy else box.key in shown)
            and (want := box.key in wanted) != box.choice.consented
        ]
        events.append(_review(recipient, version, now))
        counts = await record(conn, recipient.tenant.id, events, now)
        # Shown as gating now reads the ledger, not as the form asked: the page cannot
        # claim a choice the next send would not honour.
        boxes = _boxes(recipient, await load_choices(conn, recipient, now, CHANNELS))
    shared.instruments.record_ledger_events(recipient.tenant.code, counts)
    return _page(recipient, boxes, {box.key for box in boxes if box.choice.consented}, saved=True)


def _choice(recipient: Recipient, choice: Choice, wanted: bool, legacy: bool, version: str, now: int) -> dict[str, object]:
    return {
        "contact_id": recipient.contact_id,
        "action": "grant" if wanted else "revoke",
        "channel": choice.channel,
        "class_code": choice.class_code,
        # The old form asked nothing about third parties, and its untick meant "no more of
        # these, from anyone"; the grid asks about each party, so each box speaks for one.
        "party": "*" if legacy and not wanted else choice.party,
        "address": recipient.address if choice.channel == recipient.channel else None,
        "method": "preference_centre",
        "occurred_at_us": now,
        "actor": "recipient",
        "wording_id": WORDING_ID,
        "wording_version": version,
    }


def _review(recipient: Recipient, version: str, now: int) -> dict[str, object]:
    return {
        "contact_id": recipient.contact_id,
        "action": "review",
        "method": "preference_centre",
        "occurred_at_us": now,
        "actor": "recipient",
        "wording_id": WORDING_ID,
        "wording_version": version,
    }
