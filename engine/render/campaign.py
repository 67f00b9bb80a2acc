"""Compiling a campaign's templates once, at launch (or resume, from the snapshot)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.render.context import STANDARD_VARIABLES
from engine.render.errors import InvalidTemplateError
from engine.render.lookup import TemplateSource
from engine.render.sandbox import CompiledTemplate, compile_template


@dataclass(frozen=True, slots=True)
class CampaignTemplates:
    """A campaign's compiled templates: `text` is the email text part or the SMS body."""

    source: TemplateSource
    text: CompiledTemplate
    html: CompiledTemplate | None = None
    subject: CompiledTemplate | None = None


def compile_campaign_templates(
    source: TemplateSource,
    *,
    subject: str | None = None,
    variables: Iterable[str] = (),
    subject_origin: str = "campaign:subject",
) -> CampaignTemplates:
    """Compile `source` (and, for email, the campaign's `subject`) in the sandbox.

    `variables` names what the caller adds to the standard context (STANDARD_VARIABLES);
    a template reading anything else fails here. Raises `InvalidTemplateError`,
    `TemplateSecurityError` or `UndefinedVariableError`, each naming the file.
    """
    allowed = STANDARD_VARIABLES | frozenset(variables)
    text = compile_template(source.text, origin=source.text_origin, variables=allowed)
    if source.channel != "email":
        if source.html is not None:
            raise InvalidTemplateError(source.html_origin or source.name,
                                       f"a {source.channel} template has no HTML part")
        return CampaignTemplates(source=source, text=text)
    if subject is None or not subject.strip():
        raise InvalidTemplateError(subject_origin, "an email campaign needs a subject")
    html = None
    if source.html is not None:
        html = compile_template(source.html, origin=source.html_origin or source.name,
                                html=True, variables=allowed)
    compiled_subject = compile_template(subject, origin=subject_origin, variables=allowed)
    return CampaignTemplates(source=source, text=text, html=html, subject=compiled_subject)
