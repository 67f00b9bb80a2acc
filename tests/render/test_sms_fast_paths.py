"""The SMS render's fast paths give exactly what the general paths give.

`simple_filler` fills templates of literal text and `{{ a or b or "text" }}` without Jinja;
`CampaignContext.for_recipient(tokens=False)` copies the campaign's names instead of
checking them one by one. Generated templates and contexts are rendered both ways.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.render import (
    STANDARD_VARIABLES,
    CampaignContext,
    SmsRenderer,
    TemplateSource,
    UndefinedVariableError,
    compile_campaign_templates,
    compile_template,
    recipient_context,
)
from engine.render.sms import simple_filler

FOOTER = "Reply STOP to opt out of texts from this number."
NAMES = sorted(STANDARD_VARIABLES)
# Literal text: anything but what starts a Jinja tag; line breaks and STOP included.
LITERAL = st.text(st.sampled_from(list("abc XYZ,.!?'\"\n\r\téü€😀-STOP%}#")), max_size=30).filter(
    lambda text: "{" not in text)
VALUES = st.one_of(st.text(max_size=8), st.just(""), st.integers(-3, 3), st.none(), st.booleans(),
                   st.lists(st.integers(0, 2), max_size=2))


@st.composite
def expressions(draw: st.DrawFn, names: list[str]) -> str:
    """`name`, `"text"` or an `or` chain of them, as a template author writes it."""
    alternatives = draw(st.lists(st.one_of(
        st.sampled_from(names),
        st.text(st.sampled_from(list("ab ,!é")), max_size=6).map(lambda text: f'"{text}"'),
    ), min_size=1, max_size=4))
    return " or ".join(alternatives)


@st.composite
def simple_templates(draw: st.DrawFn, names: tuple[str, ...] = (*NAMES, "vehicle")) -> str:
    pieces = draw(st.lists(st.one_of(LITERAL, expressions(list(names)).map(lambda expr: f"{{{{ {expr} }}}}")),
                           min_size=1, max_size=6))
    return "".join(pieces)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, object]:
    values = draw(st.dictionaries(st.sampled_from([*NAMES, "vehicle"]), VALUES, max_size=8))
    return {name: value for name, value in values.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=simple_templates(), context=contexts())
def test_the_filler_renders_what_jinja_renders(source: str, context: dict[str, object]) -> None:
    template = compile_template(source, origin="t.txt")
    filler = simple_filler(template)
    assert filler is not None, source
    filled = filler(context)
    if filled is None:  # a name the context lacks: Jinja decides (here: it is undefined)
        with pytest.raises(UndefinedVariableError):
            template.render(context)
    else:
        assert filled == template.render(context)


@pytest.mark.parametrize("source", [
    "Hi {% if first_name %}{{ first_name }}{% endif %}!",
    "Hi {{ first_name|upper }}",
    "Hi {{ first_name ~ '!' }}",
    "Hi {{ first_name and last_name }}",
    "You are {{ 3 }} days late",
    "{{ self }} {{ loop }}",
    "{% set x = 'a' %}{{ x }}",
    "Hi {{ first_name.upper() }}",
])
def test_other_templates_take_jinja(source: str) -> None:
    assert simple_filler(compile_template(source, origin="t.txt")) is None


def test_comments_and_whitespace_control_are_jinja_s() -> None:
    source = "{# a comment #}Hi {{ first_name or 'there' }},\n{%- if true %}{% endif %} bye\n"
    template = compile_template(source.replace("{%- if true %}{% endif %}", "{#- x #}"), origin="t.txt")
    filler = simple_filler(template)
    assert filler is not None
    assert filler(recipient_context()) == template.render(recipient_context()) == "Hi there, bye"


def test_a_global_the_context_lacks_is_left_to_jinja() -> None:
    template = compile_template("{{ range or first_name }}", origin="t.txt")
    filler = simple_filler(template)
    assert filler is not None and filler(recipient_context()) is None
    assert template.render(recipient_context()).startswith("<function")


def renderers(body: str) -> tuple[SmsRenderer, SmsRenderer]:
    """The renderer of `body`, and the same with every template rendered by Jinja."""
    source = TemplateSource(channel="sms", name="t", text=body, text_origin="t.txt")
    fast, slow = (SmsRenderer.from_templates(compile_campaign_templates(source), opt_out_footer=FOOTER,
                                             opt_in_message="Hi {{ first_name or 'there' }}! Reply YES.")
                  for _ in range(2))
    slow._fillers.clear()
    return fast, slow


@settings(max_examples=200, deadline=None)
@given(body=simple_templates(tuple(NAMES)).filter(lambda text: text.strip()), first_name=st.none() | st.text(max_size=8),
       first_touch=st.booleans())
def test_sms_bodies_are_the_same_either_way(body: str, first_name: str | None, first_touch: bool) -> None:
    fast, slow = renderers(body)
    assert fast._fillers  # the body and the opt-in request take the filler
    context = recipient_context(first_name=first_name, tenant_name="Acme Motors", agent_name="Sam")
    outcomes = []
    for renderer in (fast, slow):
        try:
            outcomes.append(renderer.render(context, first_touch=first_touch))
        except Exception as exc:  # noqa: BLE001 - the same error either way is the point
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
    assert fast.render_opt_in_request(context) == slow.render_opt_in_request(context)


CONTEXT = CampaignContext(tenant_id=3, campaign_id=11, channel="sms", secret=b"test-secret-0123456789",
                          public_url="https://links.acme.example", tenant_name="Acme Motors",
                          postal_address="1 Main St", sender_name="Acme Service", agent_name="")


@settings(max_examples=200, deadline=None)
@given(fields=st.fixed_dictionaries({}, optional={
    name: st.none() | st.text(max_size=6) for name in ("external_id", "first_name", "last_name", "email", "phone")}))
def test_a_context_without_tokens_is_the_general_one(fields: dict[str, str | None]) -> None:
    context = CONTEXT.for_recipient(7, tokens=False, **fields)
    assert context == recipient_context(
        **fields, tenant_name="Acme Motors", postal_address="1 Main St", sender_name="Acme Service",
        agent_name="", unsubscribe_token="", unsubscribe_url="", preferences_url="")
    assert list(context) == list(recipient_context())  # same names, same order
    context["first_name"] = "changed"  # each recipient's own dict: the next is untouched
    assert CONTEXT.for_recipient(8, tokens=False)["first_name"] == ""


@settings(max_examples=100)
@given(fields=st.fixed_dictionaries({}, optional={
    name: st.none() | st.text(max_size=6) for name in ("external_id", "first_name", "last_name", "email", "phone")}),
       extra=st.none() | st.dictionaries(st.sampled_from(["vehicle", "dealer"]), st.text(max_size=6)))
def test_a_context_with_tokens_and_extra_names_is_the_general_one(
        fields: dict[str, str | None], extra: dict[str, str] | None) -> None:
    # The same copy of the campaign's names serves every context, tokens and extras included.
    from engine.render.tokens import preferences_url, sign_token, unsubscribe_url

    token = sign_token(CONTEXT.secret, CONTEXT.tenant_id, CONTEXT.campaign_id, 7, CONTEXT.channel)
    assert CONTEXT.for_recipient(7, extra=extra, **fields) == recipient_context(
        extra, **fields, tenant_name="Acme Motors", postal_address="1 Main St", sender_name="Acme Service",
        agent_name="", unsubscribe_token=token, unsubscribe_url=unsubscribe_url(CONTEXT.public_url, token),
        preferences_url=preferences_url(CONTEXT.public_url, token))
    with pytest.raises(ValueError, match="may not replace standard ones"):
        CONTEXT.for_recipient(7, extra={"unsubscribe_url": "https://evil.example"})
