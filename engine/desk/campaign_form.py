"""The new-campaign form: its fields, and the campaign.yaml mapping they make.

The form is a flat list of inputs; the API's create takes campaign.yaml as nested JSON.
`definition_from_form` builds that mapping (leaving out what was left empty, as a YAML
file would) and hands it to the same create the API calls, so validation is the API's,
message for message. `field_errors` puts each error back beside the input it is about:
the API names fields by their dotted path (`sender.email`, `audience.lead_source`), the
form by the input's name (`sender_email`, `audience_lead_source`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError
from engine.render.lookup import builtin_templates

__all__ = ["FIELDS", "FormErrors", "definition_from_form", "field_errors", "template_choices"]

# Every input of the form, in order.
FIELDS = (
    "campaign", "channel", "kind", "class", "party", "template", "subject", "sender_email", "sender_name",
    "sender_phone", "agent_name", "audience_lead_source", "audience_external_id", "audience_country",
    "audience_region", "rate_per_second",
)
# Audience filters (campaigns/definition.py Audience): a comma-separated list each.
AUDIENCE = ("lead_source", "external_id", "country", "region")


def definition_from_form(form: Mapping[str, str], tenant: str) -> dict[str, Any]:
    """The campaign.yaml mapping the form describes; empty inputs are left out."""
    value = {name: form.get(name, "").strip() for name in FIELDS}
    body: dict[str, Any] = {"tenant": tenant}
    for name in ("campaign", "channel", "kind", "class", "party", "template", "subject", "agent_name"):
        if value[name]:
            body[name] = value[name]
    sender = {part: value[f"sender_{part}"] for part in ("email", "name", "phone") if value[f"sender_{part}"]}
    if sender:
        body["sender"] = sender
    audience = {}
    for name in AUDIENCE:
        items = [item.strip() for item in value[f"audience_{name}"].split(",") if item.strip()]
        if items:
            audience[name] = items
    body["audience"] = audience
    if value["rate_per_second"]:
        body["rate"] = {"per_second": value["rate_per_second"]}
    return body


@dataclass
class FormErrors:
    """Messages per input name; `general` for those that name no input."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)


def _input_for(api_field: str, channel: str) -> str | None:
    parts = api_field.split(".")
    head = parts[0]
    if head in ("sender", "audience", "rate"):
        if len(parts) == 1:
            # "an SMS campaign needs sender.phone": beside the input the channel asks for.
            return {"sender": "sender_phone" if channel == "sms" else "sender_email", "audience": "audience_lead_source",
                    "rate": "rate_per_second"}[head]
        name = f"{head}_{parts[1]}"
        return name if name in FIELDS else None
    return head if head in FIELDS else None


def field_errors(errors: Iterable[InputError], channel: str) -> FormErrors:
    found = FormErrors()
    for error in errors:
        name = _input_for(error.field, channel) if error.field else None
        if name is None:
            found.general.append(str(error))
        else:
            found.by_field.setdefault(name, []).append(error.message)
    return found


def template_choices() -> dict[str, list[str]]:
    """The built-in templates by channel (the only ones the API and the desk may name)."""
    choices: dict[str, list[str]] = {}
    root = builtin_templates()
    for channel in ("email", "sms"):
        names = {
            entry.name.split(".")[0] for entry in (root / channel).iterdir()
            if entry.name.endswith((".txt", ".txt.j2")) and not entry.name.startswith("_")
        }
        choices[channel] = sorted(names)
    return choices
