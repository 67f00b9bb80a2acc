"""SMS: encoding, segment counts, the opt-out footer and the opt-in request."""

from __future__ import annotations

import re

import pytest

from engine.render import (
    ComplianceError,
    RenderError,
    SmsBody,
    SmsRenderer,
    TemplateRenderError,
    TemplateSource,
    UndefinedVariableError,
    compile_campaign_templates,
    compile_template,
    measure_sms,
    recipient_context,
)
from engine.render.segments import GSM7_BASIC, GSM7_EXTENSION

FOOTER = "Reply STOP to opt out of texts from this number."
OPT_IN = (
    "Hi {{ first_name }}, this is {{ agent_name }} from {{ tenant_name }}. Thanks for "
    "contacting us! Please reply YES to confirm it's OK to text you about your inquiry. "
    "Msg & data rates may apply. Reply STOP to cancel."
)


# --- segments ------------------------------------------------------------------------


def test_alphabet_tables() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "GSM-7", 0, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension table: 2 septets each
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 159 + "€", "GSM-7", 161, 2),
    ("a" * 158 + "[", "GSM-7", 160, 1),
    ("Ça coûte 5€ — merci", "UCS-2", 19, 1),  # û and — are not GSM-7
    ("é" * 160, "GSM-7", 160, 1),  # é is in the basic set
    ("ê" * 70, "UCS-2", 70, 1),
    ("ê" * 71, "UCS-2", 71, 2),
    ("ê" * 134, "UCS-2", 134, 2),
    ("ê" * 135, "UCS-2", 135, 3),
    ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair is 2 units
    ("😀" * 36, "UCS-2", 72, 2),
    ("a" * 69 + "😀", "UCS-2", 71, 2),
    ("Hi `x`", "UCS-2", 6, 1),  # the backtick is not GSM-7
    ("line\nbreak\r", "GSM-7", 11, 1),
])
def test_segments(text: str, encoding: str, units: int, segments: int) -> None:
    assert measure_sms(text) == SmsBody(text, encoding, segments, units)  # type: ignore[arg-type]


# --- renderer ----------------------------------------------------------------------


def renderer(body: str = "Hi {{ first_name or 'there' }}, your car is ready.",
             **options: object) -> SmsRenderer:
    source = TemplateSource(channel="sms", name="t", text=body, text_origin="t.txt")
    templates = compile_campaign_templates(source)
    settings: dict[str, object] = {"opt_out_footer": FOOTER, "opt_in_message": OPT_IN}
    settings.update(options)
    return SmsRenderer.from_templates(templates, **settings)  # type: ignore[arg-type]


def test_first_touch_gets_the_footer() -> None:
    sms = renderer()
    first = sms.render(recipient_context(first_name="Ann"), first_touch=True)
    assert first.text == f"Hi Ann, your car is ready.\n{FOOTER}"
    later = sms.render(recipient_context(first_name="Ann"), first_touch=False)
    assert later.text == "Hi Ann, your car is ready."
    assert (first.encoding, first.segments) == ("GSM-7", 1)


def test_footer_not_added_twice() -> None:
    text = f"Your car is ready. {FOOTER}"
    assert renderer(text).render(recipient_context(), True).text == text
    sms = renderer("Your car is ready. Text STOP to end.")
    assert sms.render(recipient_context(), True).text == "Your car is ready. Text STOP to end."
    # The footer is found whatever its case and spacing.
    sms = renderer("Ready! to OPT out,\n  answer END.", opt_out_footer="To opt out, answer END.")
    assert sms.render(recipient_context(), True).text == "Ready! to OPT out,\n  answer END."


def test_the_word_stop_alone_is_not_an_instruction() -> None:
    sms = renderer("Don't STOP by without booking.")
    assert sms.render(recipient_context(), True).text.endswith(FOOTER)


def test_footer_can_push_into_a_second_segment() -> None:
    sms = renderer("x" * 120)
    assert sms.render(recipient_context(), False).segments == 1
    body = sms.render(recipient_context(), True)
    assert body.units == 120 + 1 + len(FOOTER) and body.segments == 2


def test_text_is_trimmed_and_line_endings_normalised() -> None:
    sms = renderer("\n  Hi {{ first_name }}\r\nsee you  \n\n")
    assert sms.render(recipient_context(first_name="Al"), False).text == "Hi Al\nsee you"


def test_emoji_name_switches_to_ucs2() -> None:
    body = renderer().render(recipient_context(first_name="Zoë 🚗"), False)
    assert body.encoding == "UCS-2" and body.units == len("Hi Zoë 🚗, your car is ready.") + 1


def test_opt_in_request() -> None:
    sms = renderer()
    request = sms.render_opt_in_request(recipient_context(
        first_name="Ann", agent_name="Sam", tenant_name="Acme Motors"))
    assert request.text == (
        "Hi Ann, this is Sam from Acme Motors. Thanks for contacting us! Please reply YES to "
        "confirm it's OK to text you about your inquiry. Msg & data rates may apply. "
        "Reply STOP to cancel."
    )
    assert FOOTER not in request.text  # it already says how to stop
    assert request.encoding == "GSM-7" and request.segments == 2


def test_opt_in_request_without_stop_gets_the_footer() -> None:
    sms = renderer(opt_in_message="Hi {{ first_name }}! Reply YES to get texts from us.")
    assert sms.render_opt_in_request(recipient_context(first_name="Al")).text == (
        f"Hi Al! Reply YES to get texts from us.\n{FOOTER}"
    )


def test_opt_in_message_variables_are_checked_when_compiled() -> None:
    with pytest.raises(UndefinedVariableError):
        renderer(opt_in_message="Hi {{ firstname }}")


def test_missing_opt_in_message_or_body() -> None:
    with pytest.raises(RenderError):
        renderer(opt_in_message=None).render_opt_in_request(recipient_context())
    opt_in_only = SmsRenderer(None, opt_out_footer=FOOTER, opt_in_message=OPT_IN)
    with pytest.raises(RenderError):
        opt_in_only.render(recipient_context(), True)


def test_empty_footer_is_a_compliance_error() -> None:
    with pytest.raises(ComplianceError):
        renderer(opt_out_footer="  ")


def test_empty_text_is_refused() -> None:
    with pytest.raises(TemplateRenderError):
        renderer("{{ first_name }}").render(recipient_context(), True)


def test_with_footer_for_individual_texts() -> None:
    sms = SmsRenderer(compile_template("{{ body }}", origin="cli"), opt_out_footer=FOOTER)
    assert sms.with_footer("See you at 3") == f"See you at 3\n{FOOTER}"
    assert sms.render(recipient_context({"body": "See you"}), True).text == (
        f"See you\n{FOOTER}"
    )


# --- the per-campaign shortcuts give the texts the plain rules give ---------------------


def test_every_ascii_character_is_measured_as_its_table_says() -> None:
    """ASCII texts take a shortcut in measure_sms; each character counts as the tables say."""
    for code in range(128):
        char = chr(code)
        text = f"ok {char}" * 40  # 160 characters, some of them `char`
        if char in GSM7_BASIC:
            expected = SmsBody(text, "GSM-7", 1, 160)
        elif char in GSM7_EXTENSION:
            expected = SmsBody(text, "GSM-7", 2, 200)  # 40 of them at 2 septets: 200 / 153
        else:
            expected = SmsBody(text, "UCS-2", 3, 160)  # 160 / 67 per part
        assert measure_sms(text) == expected, repr(char)


def test_the_quick_tests_for_stop_miss_no_instruction() -> None:
    """has_opt_out_instruction first looks for "stop" and the footer's longest word in the
    casefolded text. That is sound only if whatever the instruction's IGNORECASE match
    accepts as s, t, o, p casefolds to them, and casefolding never makes or unmakes
    whitespace (the footer is compared with its spaces collapsed): checked for every
    character."""
    whitespace, letters = re.compile(r"\s"), re.compile("[stop]", re.IGNORECASE)
    for code in range(0x110000):
        char = chr(code)
        folded = char.casefold()
        if letters.fullmatch(char):
            assert folded in "stop" and len(folded) == 1 and re.fullmatch(folded, char, re.IGNORECASE), hex(code)
        if folded != char or whitespace.fullmatch(char):
            is_space = bool(whitespace.fullmatch(char))
            assert is_space == all(whitespace.fullmatch(part) for part in folded), hex(code)
    sms = renderer()
    assert sms.has_opt_out_instruction("Reply ſTOP to end")  # the long s matches s
    assert sms.has_opt_out_instruction(FOOTER.upper().replace(" ", "\n  "))


@pytest.mark.parametrize(("body", "footer_added"), [
    # Literal text that always goes out says how to stop: decided once for the campaign.
    ("Hi {{ first_name }}! Reply STOP to opt out.", False),
    (f"{{{{ first_name }}}}, your car is ready. {FOOTER}", False),
    # Only when the condition holds; or touching a value that may extend the word.
    ("Hi {{ first_name }}!{% if first_name %} Reply STOP to end.{% endif %}", True),
    ("Hi! Reply STOP{{ first_name }} now", True),
    ("Hi! Reply {{ first_name }} now", True),
])
def test_stop_in_the_template_and_in_values(body: str, footer_added: bool) -> None:
    """Whether a first text gets the footer is decided per recipient whenever the template
    alone does not settle it: a value may bring the instruction or break it."""
    sms = renderer(body)
    for name in ("", "Ann", "PED", "STOP"):
        plain = sms.render(recipient_context(first_name=name), False).text
        first = sms.render(recipient_context(first_name=name), True).text
        says_stop = re.search(r"\b(?:reply|text)\s+stop\b", plain, re.IGNORECASE) or FOOTER in plain
        assert first == (plain if says_stop else f"{plain}\n{FOOTER}"), (body, name)
        if not footer_added:
            assert first == plain
