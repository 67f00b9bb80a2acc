"""The settings page's preview of the tenant's SMS texts, measured as the sender measures them.

The opt-in request is rendered by the sender's own renderer (engine/render/sms.py) for a
sample recipient, and both it and the STOP footer are counted by engine/render/segments.py,
so the encoding and segment numbers shown are the ones a send is billed by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.render.context import recipient_context
from engine.render.errors import RenderError
from engine.render.segments import SmsBody, measure_sms
from engine.render.sms import SmsRenderer

__all__ = ["SAMPLE_AGENT", "SAMPLE_FIRST_NAME", "Measured", "SmsPreview", "preview_sms"]

# The sample recipient the opt-in request is rendered for (docs/desk.md, "Settings").
SAMPLE_FIRST_NAME = "Ava"
SAMPLE_AGENT = "Jordan"


@dataclass(frozen=True, slots=True)
class Measured:
    """One text as it would go, or why it cannot."""

    body: SmsBody | None
    error: str | None = None

    @property
    def summary(self) -> str:
        if self.body is None:
            return ""
        characters = "character" if self.body.units == 1 else "characters"
        segments = "segment" if self.body.segments == 1 else "segments"
        return f"{self.body.encoding}, {self.body.units} {characters}, {self.body.segments} {segments}"

    def as_json(self) -> dict[str, Any]:
        if self.body is None:
            return {"error": self.error}
        return {"text": self.body.text, "encoding": self.body.encoding, "units": self.body.units,
                "segments": self.body.segments, "summary": self.summary, "error": None}


@dataclass(frozen=True, slots=True)
class SmsPreview:
    opt_in: Measured
    footer: Measured

    def as_json(self) -> dict[str, Any]:
        return {"opt_in": self.opt_in.as_json(), "footer": self.footer.as_json()}


def preview_sms(opt_in_message: str, opt_out_footer: str, tenant_name: str) -> SmsPreview:
    """The opt-in request for the sample recipient (footer rules as on a first touch) and
    the footer alone; each either measured or with the reason it cannot be sent."""
    footer = opt_out_footer.strip()
    if not footer:
        return SmsPreview(Measured(None, "needs a STOP footer first"), Measured(None, "the STOP footer is empty"))
    measured_footer = Measured(measure_sms(" ".join(footer.split())))
    if not opt_in_message.strip():
        return SmsPreview(Measured(None, "the opt-in message is empty"), measured_footer)
    try:
        renderer = SmsRenderer(None, opt_out_footer=footer, opt_in_message=opt_in_message)
        body = renderer.render_opt_in_request(recipient_context(
            first_name=SAMPLE_FIRST_NAME, agent_name=SAMPLE_AGENT, sender_name=SAMPLE_AGENT,
            tenant_name=tenant_name,
        ))
    except RenderError as exc:
        return SmsPreview(Measured(None, str(exc)), measured_footer)
    return SmsPreview(Measured(body), measured_footer)
