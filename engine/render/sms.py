"""SMS bodies: the campaign's template, the tenant's opt-out footer, the opt-in request.

The first text to a number must say how to stop them (CTIA messaging principles; carriers
filter traffic that does not). So on a first touch the tenant's `opt_out_footer` is
appended, unless the text already tells the reader how to stop: it contains the footer, or
an instruction such as "Reply STOP" / "Text STOP" (the tenant's opt-in request ends with
"Reply STOP to cancel."; a second instruction would only cost a segment).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from jinja2 import nodes

from engine.render.campaign import CampaignTemplates
from engine.render.context import STANDARD_VARIABLES, UNSUBSCRIBE_VARIABLES
from engine.render.errors import ComplianceError, RenderError, TemplateRenderError
from engine.render.sandbox import CompiledTemplate, compile_template, environment
from engine.render.segments import SmsBody, measure_sms

_STOP_INSTRUCTION = re.compile(
    r"\b(?:reply|text|txt|send|respond)\s+(?:with\s+)?[\"'“]?stop\b", re.IGNORECASE
)
_SPACES = re.compile(r"\s+")


class SmsRenderer:
    """A campaign's SMS, compiled once; `render` per recipient."""

    def __init__(
        self,
        body: CompiledTemplate | None,
        *,
        opt_out_footer: str,
        opt_in_message: str | None = None,
        variables: Iterable[str] = (),
    ) -> None:
        """`body` is the campaign template (None for a renderer that only sends opt-in
        requests); `opt_out_footer` and `opt_in_message` come from the tenant's `sms`
        policy; `variables` are names the caller adds to the standard context."""
        footer = _SPACES.sub(" ", opt_out_footer).strip()
        if not footer:
            raise ComplianceError("the tenant's sms.opt_out_footer is empty")
        self.opt_out_footer = footer
        self._footer_key = footer.casefold()
        # Its longest word: a text without it (casefolded) cannot contain the footer, and
        # that test is far cheaper than collapsing the text's spaces first.
        self._footer_word = max(self._footer_key.split(" "), key=len)
        self._body = body
        self._opt_in = None
        if opt_in_message is not None and opt_in_message.strip():
            self._opt_in = compile_template(
                opt_in_message,
                origin="tenant:sms.opt_in_message",
                variables=STANDARD_VARIABLES | frozenset(variables),
            )
        # Does any of its templates read the unsubscribe token or links? If not, the
        # per-recipient context need not sign one (CampaignContext.for_recipient `tokens`).
        self.reads_unsubscribe_links = any(
            template is not None and not UNSUBSCRIBE_VARIABLES.isdisjoint(template.variables)
            for template in (body, self._opt_in)
        )
        # Templates whose every rendering already tells how to stop, decided once.
        self._always_instructed = {
            id(template) for template in (body, self._opt_in)
            if template is not None and self._always_instructs(template)
        }
        # Templates simple enough to fill without Jinja (`simple_filler`), decided once.
        self._fillers = {
            id(template): filler for template in (body, self._opt_in)
            if template is not None and (filler := simple_filler(template)) is not None
        }

    @classmethod
    def from_templates(
        cls,
        templates: CampaignTemplates,
        *,
        opt_out_footer: str,
        opt_in_message: str | None = None,
        variables: Iterable[str] = (),
    ) -> SmsRenderer:
        """The renderer of an SMS campaign compiled by `compile_campaign_templates`."""
        return cls(templates.text, opt_out_footer=opt_out_footer,
                   opt_in_message=opt_in_message, variables=variables)

    def render(self, context: Mapping[str, object], first_touch: bool) -> SmsBody:
        """The campaign's text for one recipient; `first_touch` when it is the first text
        this sender sends to the number (the footer is added then)."""
        if self._body is None:
            raise RenderError("this SMS renderer has no body template")
        return self._finish(self._body, context, first_touch)

    def render_opt_in_request(self, context: Mapping[str, object]) -> SmsBody:
        """The tenant's opt-in request (`sms.opt_in_message`), the one text allowed to a new
        lead before they reply YES; always a first touch."""
        if self._opt_in is None:
            raise RenderError("the tenant has no sms.opt_in_message")
        return self._finish(self._opt_in, context, True)

    def with_footer(self, text: str) -> str:
        """`text` with the opt-out footer, unless it already tells how to stop."""
        if self.has_opt_out_instruction(text):
            return text
        return f"{text}\n{self.opt_out_footer}"

    def has_opt_out_instruction(self, text: str) -> bool:
        """Does `text` tell the reader how to stop (the footer, or "Reply STOP"...)?"""
        # Cheap tests first (most texts of a first touch have neither): the instruction
        # needs "stop" in the casefolded text (what IGNORECASE matches as s, t, o, p
        # casefolds to them), and the footer needs its longest word there (casefolding
        # neither makes nor unmakes whitespace). tests/render/test_sms.py checks both.
        folded = text.casefold()
        if "stop" in folded and _STOP_INSTRUCTION.search(text):
            return True
        if self._footer_word not in folded:
            return False
        return self._footer_key in _SPACES.sub(" ", text).casefold()

    def _always_instructs(self, template: CompiledTemplate) -> bool:
        """Does every rendering of `template` tell how to stop, whatever the recipient?

        True when a piece of literal text that is always output (outside any `{% if %}`,
        `{% for %}` or expression) holds the footer, or a "Reply STOP" that does not touch
        the piece's edges: what is rendered around it cannot then change the match (its
        word boundaries are inside the piece), nor can `_finish`'s clean-up (strip, line
        endings: whitespace only). Otherwise each text is checked as it is rendered.
        """
        ast = environment(html=False).parse(template.source)
        for statement in ast.body:
            if not isinstance(statement, nodes.Output):
                continue
            for piece in statement.nodes:
                if not isinstance(piece, nodes.TemplateData):
                    continue
                edge = len(piece.data)
                if any(0 < match.start() and match.end() < edge
                       for match in _STOP_INSTRUCTION.finditer(piece.data)):
                    return True
                if self._footer_key in _SPACES.sub(" ", piece.data).casefold():
                    return True
        return False

    def _finish(self, template: CompiledTemplate, context: Mapping[str, object],
                first_touch: bool) -> SmsBody:
        text = None
        filler = self._fillers.get(id(template))
        if filler is not None:
            text = filler(context)
        if text is None:
            text = template.render(context)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = text.strip()
        if not text:
            raise TemplateRenderError(template.origin, "the SMS text is empty")
        if first_touch and id(template) not in self._always_instructed:
            text = self.with_footer(text)
        return measure_sms(text)


# A simple template, as `simple_filler` reads it: literal text, and alternatives for each
# `{{ ... }}` ((True, name) reads the context, (False, text) is a quoted string).
_Alternatives = tuple[tuple[bool, str], ...]
# Names Jinja binds itself inside a template, whatever the context holds.
_JINJA_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs", "super"})


def simple_filler(template: CompiledTemplate) -> Callable[[Mapping[str, object]], str | None] | None:
    """A function giving what `template.render(context)` gives, without Jinja, for a
    template made only of literal text and `{{ name }}` / `{{ a or b or "text" }}`
    expressions (most SMS templates: `Hi {{ first_name or "there" }}...`); None for any
    other template.

    Jinja's render of such a template is the literal text with, for each expression, `str`
    of its first true alternative (else the last one): that is what the filler computes,
    for a tenth of the CPU (a Jinja render builds a Context, copies the globals and goes
    through a generator per text). A name missing from the context returns None: the
    caller then renders with Jinja, which resolves it (a global) or raises its error.
    tests/render/test_sms.py compares the two on generated templates and contexts.
    """
    parts: list[str | _Alternatives] = []
    for statement in environment(html=False).parse(template.source).body:
        if not isinstance(statement, nodes.Output):  # {% if %}, {% for %}, {% set %}...
            return None
        for piece in statement.nodes:
            if isinstance(piece, nodes.TemplateData):
                parts.append(piece.data)
                continue
            alternatives = _alternatives(piece)
            if alternatives is None:
                return None
            parts.append(alternatives)
    frozen = tuple(parts)

    def fill(context: Mapping[str, object]) -> str | None:
        out: list[str] = []
        for part in frozen:
            if isinstance(part, str):
                out.append(part)
                continue
            value: object = ""
            for is_name, item in part:
                if is_name:
                    if item not in context:
                        return None
                    value = context[item]
                else:
                    value = item
                if value:
                    break
            out.append(str(value))
        return "".join(out)

    return fill


def _alternatives(node: nodes.Node) -> _Alternatives | None:
    """`a or b or "text"` as its alternatives in order, or None for any other expression."""
    if isinstance(node, nodes.Or):
        left, right = _alternatives(node.left), _alternatives(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in _JINJA_NAMES:
        return ((True, node.name),)
    if isinstance(node, nodes.Const) and type(node.value) is str:
        return ((False, node.value),)
    return None
