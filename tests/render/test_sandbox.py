"""The sandbox: compile once, strict variables, no way out to Python internals."""

from __future__ import annotations

import pytest

from engine.render import (
    STANDARD_VARIABLES,
    InvalidTemplateError,
    TemplateRenderError,
    TemplateSecurityError,
    TemplateSource,
    UndefinedVariableError,
    compile_campaign_templates,
    compile_template,
    recipient_context,
)


def render(source: str, html: bool = False, **values: object) -> str:
    template = compile_template(source, origin="t.txt", html=html)
    return template.render(recipient_context(**values))


# --- attempts written into the template: refused at compile time -----------------------

COMPILE_TIME_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__class__ }}",
    "{{ ''['__class__'] }}",
    "{{ first_name|attr('__class__') }}",
    "{% set x = dict.__base__ %}{{ x }}",
    "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self._TemplateReference__context }}",
    "{{ (1).real.__class__ }}",
    "{{ config.items() if config is defined else '' }}{{ x.gi_frame }}",
    "{{ first_name.mro() }}",
]


@pytest.mark.parametrize("source", COMPILE_TIME_ESCAPES)
def test_escape_attempts_fail_at_compile_time(source: str) -> None:
    with pytest.raises(TemplateSecurityError) as caught:
        compile_template(source, origin="evil.txt")
    assert "evil.txt:1" in str(caught.value)


@pytest.mark.parametrize("keyword", [
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{% import 'macros.html' as m %}",
    "{% from 'macros.html' import x %}",
])
def test_no_file_can_be_reached(keyword: str) -> None:
    with pytest.raises(InvalidTemplateError) as caught:
        compile_template(keyword, origin="evil.txt")
    assert "not available" in str(caught.value)


# --- attempts computed at render time: the sandbox refuses them -----------------------

RENDER_TIME_ESCAPES = [
    ("{{ first_name|attr('__cla' ~ 'ss__') }}", {}),
    ("{{ first_name[dunder] }}", {"dunder": "__class__"}),
    ("{{ (cycler|attr(['__in', 'it__']|join))|attr('__glo' ~ 'bals__') }}", {}),
    ("{{ first_name|attr(name) }}", {"name": "__doc__"}),
    ("{{ '{0.__class__}'.format(first_name) }}", {}),
    ("{{ first_name.format_map }}{{ first_name|attr('_' ~ '_init__') }}", {}),
]


@pytest.mark.parametrize(("source", "extra"), RENDER_TIME_ESCAPES)
def test_escape_attempts_fail_at_render_time(source: str, extra: dict[str, object]) -> None:
    try:
        template = compile_template(source, origin="evil.txt")
    except TemplateSecurityError:
        pytest.fail("these are only visible at render time")
    with pytest.raises(TemplateSecurityError) as caught:
        template.render(recipient_context(extra))
    assert "evil.txt" in str(caught.value)


def test_mutating_builtins_is_refused() -> None:
    template = compile_template("{% set l = [1] %}{{ l.append(2) }}{{ l }}", origin="t")
    with pytest.raises(TemplateSecurityError):
        template.render(recipient_context())


def test_harmless_globals_render_nothing_dangerous() -> None:
    text = render("{{ cycler }}|{{ range }}|{{ dict(a=1) }}")
    assert "__" not in text and "globals" not in text


@pytest.mark.parametrize("source", [
    "{{ 'x' * 10 ** 8 }}",
    "{{ [0] * 100000000 }}",
    "{{ 2 ** 100000000 }}",
    "{{ 'x'.center(100000000) }}",
    "{{ 'x'|center(100000000) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ '%100000000s' % 'x' }}",
    "{{ '%100000000s'|format('x') }}",
    "{{ range(100000000)|list }}",
])
def test_memory_amplifiers_are_capped(source: str) -> None:
    template = compile_template(source, origin="greedy.txt")
    with pytest.raises(TemplateSecurityError):
        template.render(recipient_context())


def test_modest_arithmetic_and_formatting_still_work() -> None:
    assert render("{{ '-' * 20 }}") == "-" * 20
    assert render("{{ 2 ** 10 }} {{ '%.2f' % 3.14159 }} {{ '{:>6}'.format('ab') }}") == (
        "1024 3.14     ab"
    )
    assert render("{{ '{:,}'.format(1500000) }}") == "1,500,000"


# --- variables ---------------------------------------------------------------------


def test_missing_standard_fields_render_empty() -> None:
    assert render("Hi {{ first_name }}{{ last_name }}!") == "Hi !"
    assert render('Hi {{ first_name or "there" }}!') == "Hi there!"
    assert render('Hi {{ first_name|default("there", true) }}!') == "Hi there!"
    assert render("Hi {{ first_name }}!", first_name=None) == "Hi !"


def test_unknown_variable_is_an_error_at_render_naming_it() -> None:
    template = compile_template("Your {{ vehicle }} is due", origin="due.txt")
    with pytest.raises(UndefinedVariableError) as caught:
        template.render(recipient_context())
    assert caught.value.variable == "vehicle"
    assert "vehicle" in str(caught.value) and "due.txt" in str(caught.value)


def test_unknown_attribute_is_an_error() -> None:
    template = compile_template("{{ car.model }}", origin="t.txt")
    with pytest.raises(UndefinedVariableError) as caught:
        template.render(recipient_context({"car": {"make": "Ford"}}))
    assert caught.value.variable == "model"


def test_unknown_variable_is_an_error_at_compile_when_variables_are_declared() -> None:
    with pytest.raises(UndefinedVariableError) as caught:
        compile_template("Hi {{ frist_name }}", origin="typo.txt", variables=STANDARD_VARIABLES)
    assert caught.value.variable == "frist_name"
    assert "frist_name" in str(caught.value)


def test_declared_extra_variables_and_defined_guards_compile() -> None:
    variables = STANDARD_VARIABLES | {"vehicle"}
    template = compile_template(
        "{{ vehicle }}{% if mileage is defined %} ({{ mileage }} mi){% endif %}"
        "{% set greeting = 'Hi' %}{{ greeting }}{% for x in range(2) %}{{ loop.index }}{% endfor %}",
        origin="t.txt", variables=variables,
    )
    assert template.variables == {"vehicle", "mileage"}
    assert template.render(recipient_context({"vehicle": "Civic"})) == "CivicHi12"
    assert template.render(recipient_context({"vehicle": "Civic", "mileage": 5})) == (
        "Civic (5 mi)Hi12"
    )


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(InvalidTemplateError) as caught:
        compile_template("line one\n{{ first_name ", origin="broken.txt")
    assert caught.value.origin == "broken.txt" and caught.value.line == 2
    assert str(caught.value).startswith("broken.txt:2: ")


def test_other_runtime_failures_are_render_errors() -> None:
    template = compile_template("{{ 1 // 0 }}", origin="t.txt")
    with pytest.raises(TemplateRenderError):
        template.render(recipient_context())


# --- escaping and whitespace -------------------------------------------------------


def test_html_is_autoescaped_text_is_not() -> None:
    name = "<script>alert(1)</script> & Co"
    assert render("{{ first_name }}", html=True, first_name=name) == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co"
    )
    assert render("{{ first_name }}", first_name=name) == name


def test_block_lines_leave_no_blank_lines() -> None:
    source = "Hi\n{% if first_name %}\n{{ first_name }}\n{% endif %}\nBye\n"
    assert render(source, first_name="Ann") == "Hi\nAnn\nBye"


def test_static_template_is_detected() -> None:
    assert compile_template("Your spring offer", origin="s").is_static
    assert not compile_template("Hi {{ first_name }}", origin="s").is_static
    assert not compile_template("{% if true %}x{% endif %}", origin="s").is_static


# --- per campaign ------------------------------------------------------------------


def test_campaign_templates_compile_once_with_their_origins() -> None:
    source = TemplateSource(channel="email", name="t", text="Hi {{ first_name }}",
                            text_origin="t.txt", html="<p>{{ first_name }}</p>",
                            html_origin="t.html")
    templates = compile_campaign_templates(source, subject="For {{ first_name }}")
    context = recipient_context(first_name="A&B")
    assert templates.text.render(context) == "Hi A&B"
    assert templates.html is not None and templates.html.render(context) == "<p>A&amp;B</p>"
    assert templates.subject is not None and templates.subject.render(context) == "For A&B"


def test_campaign_templates_refuse_unknown_variables_at_launch() -> None:
    source = TemplateSource(channel="sms", name="t", text="Your {{ vehicle }}",
                            text_origin="t.txt")
    with pytest.raises(UndefinedVariableError):
        compile_campaign_templates(source)
    compiled = compile_campaign_templates(source, variables=["vehicle"])
    assert compiled.text.render(recipient_context({"vehicle": "Civic"})) == "Your Civic"


def test_email_campaign_needs_a_subject() -> None:
    source = TemplateSource(channel="email", name="t", text="x", text_origin="t.txt")
    with pytest.raises(InvalidTemplateError):
        compile_campaign_templates(source, subject=None)


def test_bad_html_part_names_the_html_file() -> None:
    source = TemplateSource(channel="email", name="t", text="x", text_origin="t.txt",
                            html="{{ ''.__class__ }}", html_origin="t.html")
    with pytest.raises(TemplateSecurityError) as caught:
        compile_campaign_templates(source, subject="s")
    assert "t.html" in str(caught.value)


def test_errors_survive_pickling() -> None:
    import pickle

    from engine.render import HeaderInjectionError, TemplateNotFound

    for error in (
        TemplateNotFound("x", ["a", "b"], hint="h"),
        UndefinedVariableError("t.txt", "vehicle", "'vehicle' is undefined"),
        HeaderInjectionError("To", "a@b\r\nBcc: c@d"),
        InvalidTemplateError("t.txt", "bad", line=3),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
