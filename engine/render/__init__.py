"""The render stage: campaign templates to message bytes (docs/render.md).

Once per campaign: `find_templates` → `compile_campaign_templates` (sandboxed Jinja2) →
`EmailSkeleton.from_templates` or `SmsRenderer.from_templates`, plus a `CampaignContext`.
Per recipient: `CampaignContext.for_recipient` → `EmailSkeleton.render` (bytes, ready for
SMTP) or `SmsRenderer.render` (text, encoding, segments). No IO after the lookup.
"""

from engine.render.campaign import CampaignTemplates, compile_campaign_templates
from engine.render.context import STANDARD_VARIABLES, CampaignContext, recipient_context
from engine.render.errors import (
    ComplianceError,
    HeaderInjectionError,
    InvalidHeaderError,
    InvalidTemplateError,
    RenderError,
    TemplateNotFound,
    TemplateRenderError,
    TemplateSecurityError,
    UndefinedVariableError,
)
from engine.render.lookup import TemplateSource, builtin_templates, find_templates
from engine.render.pages import PAGES, render_page
from engine.render.return_path import (
    ReturnPathClaims,
    sign_return_path,
    split_tagged,
    tagged_address,
    verify_return_path,
)
from engine.render.sandbox import CompiledTemplate, compile_template
from engine.render.segments import SmsBody, measure_sms
from engine.render.signing import DkimError, DkimSigner
from engine.render.skeleton import EmailContent, EmailSkeleton
from engine.render.sms import SmsRenderer
from engine.render.tokens import (
    TokenClaims,
    preferences_url,
    sign_token,
    unsubscribe_url,
    verify_token,
)

__all__ = [
    "PAGES",
    "STANDARD_VARIABLES",
    "CampaignContext",
    "CampaignTemplates",
    "CompiledTemplate",
    "ComplianceError",
    "DkimError",
    "DkimSigner",
    "EmailContent",
    "EmailSkeleton",
    "HeaderInjectionError",
    "InvalidHeaderError",
    "InvalidTemplateError",
    "RenderError",
    "ReturnPathClaims",
    "SmsBody",
    "SmsRenderer",
    "TemplateNotFound",
    "TemplateRenderError",
    "TemplateSecurityError",
    "TemplateSource",
    "TokenClaims",
    "UndefinedVariableError",
    "builtin_templates",
    "compile_campaign_templates",
    "compile_template",
    "find_templates",
    "measure_sms",
    "preferences_url",
    "recipient_context",
    "render_page",
    "sign_return_path",
    "sign_token",
    "split_tagged",
    "tagged_address",
    "unsubscribe_url",
    "verify_return_path",
    "verify_token",
]
