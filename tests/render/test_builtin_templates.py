"""The built-in templates compile in the sandbox and render sensibly."""

from __future__ import annotations

import email
import email.policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine.render import (
    PAGES,
    CampaignContext,
    EmailSkeleton,
    SmsRenderer,
    TemplateNotFound,
    UndefinedVariableError,
    builtin_templates,
    compile_campaign_templates,
    find_templates,
    recipient_context,
    render_page,
)
from tests.render.conftest import POSTAL

FOOTER = "Reply STOP to opt out of texts from this number."


class _Tags(HTMLParser):
    """Collects tags, and fails on unbalanced ones: enough to catch a broken template."""

    VOID = {"meta", "br", "input", "img", "hr", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()


def tags(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


@pytest.mark.parametrize("name", ["spring_offer", "newsletter"])
def test_builtin_emails(name: str, tmp_path: Path, campaign_context: CampaignContext) -> None:
    templates = compile_campaign_templates(find_templates("email", name, tmp_path),
                                           subject="News")
    sk = EmailSkeleton.from_templates(
        templates, sender_email="service@acme.example", sender_name="Acme Service",
        bulk=True, postal_address=POSTAL, unsubscribe_mailto="unsubscribe@acme.example")
    named = sk.render_content(campaign_context.for_recipient(1, first_name="Ann"))
    unnamed = sk.render_content(campaign_context.for_recipient(2))
    assert named.text.startswith("Hi Ann,") and unnamed.text.startswith("Hi there,")
    assert named.html is not None and "Hi Ann," in named.html
    assert unnamed.html is not None and "Hi there," in unnamed.html
    assert "Acme Motors" in named.text and "{{" not in named.text + named.html
    html_tags = tags(named.html)
    assert ("html", {"lang": "en"}) in html_tags.seen
    data = sk.render("ann@example.com", "Ann", campaign_context.for_recipient(1), "a@b", 0)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain", "text/html"]


@pytest.mark.parametrize("name", ["live_lead", "service_reminder"])
def test_builtin_sms(name: str, tmp_path: Path) -> None:
    templates = compile_campaign_templates(find_templates("sms", name, tmp_path))
    sms = SmsRenderer.from_templates(templates, opt_out_footer=FOOTER)
    context = recipient_context(first_name="Alexandra", agent_name="Sam",
                                tenant_name="Acme Motors")
    first = sms.render(context, first_touch=True)
    later = sms.render(context, first_touch=False)
    assert first.encoding == later.encoding == "GSM-7"
    assert later.segments == 1 and first.segments <= 2
    assert "Alexandra" in later.text and "Acme Motors" in later.text
    assert first.text == f"{later.text}\n{FOOTER}"
    assert sms.render(recipient_context(tenant_name="Acme"), False).text.startswith("Hi there,")


def test_unsubscribe_page() -> None:
    page = render_page("unsubscribe", {
        "tenant_name": "Acme <Motors>", "channel": "email", "first_name": "Ann",
        "preferences_url": "https://x.example/p/T"})
    assert "Acme &lt;Motors&gt;" in page and "Ann, do you want to stop receiving" in page
    seen = tags(page).seen
    assert ("form", {"method": "post"}) in seen
    assert ("input", {"type": "hidden", "name": "List-Unsubscribe", "value": "One-Click"}) in seen
    assert ("a", {"href": "https://x.example/p/T"}) in seen
    minimal = render_page("unsubscribe", {"tenant_name": "Acme", "channel": "sms"})
    assert "Do you want to stop receiving text messages from Acme?" in minimal


def test_unsubscribed_page() -> None:
    page = render_page("unsubscribed", {"tenant_name": "Acme", "channel": "email"})
    assert "You will no longer receive emails from Acme." in page
    assert 'role="status"' in page
    tags(page)


def test_preferences_page() -> None:
    def box(name: str, value: str, key: str, checked: bool) -> dict[str, object]:
        return {"name": name, "value": value, "key": key, "label": key, "checked": checked}

    sections = [
        {"party": "first", "legend": "Messages from Acme", "rows": [
            {"label": "Marketing", "boxes": [box("channels", "marketing", "first:email:marketing", True),
                                             box("choices", "first:sms:marketing", "first:sms:marketing", False)]},
        ]},
        {"party": "third", "legend": "Messages from partners of Acme", "rows": [
            {"label": "Marketing", "boxes": [box("choices", "third:email:marketing", "third:email:marketing", False)]},
        ]},
    ]
    page = render_page("preferences", {"tenant_name": "Acme", "first_name": "Ann", "saved": True,
                                       "channel_labels": ["Email", "Text messages"], "sections": sections})
    seen = tags(page).seen
    assert ("input", {"type": "checkbox", "name": "channels", "value": "marketing", "checked": None,
                      "id": "first:email:marketing", "aria-label": "first:email:marketing"}) in seen
    assert ("input", {"type": "checkbox", "name": "choices", "value": "third:email:marketing",
                      "id": "third:email:marketing", "aria-label": "third:email:marketing"}) in seen
    assert ("input", {"type": "hidden", "name": "shown", "value": "first:sms:marketing"}) in seen
    assert ("form", {"method": "post"}) in seen
    assert "Your preferences have been saved." in page
    assert page.count("<legend>") == 2 and '<th scope="col">Text messages</th>' in page


def test_pages_need_their_variables() -> None:
    with pytest.raises(UndefinedVariableError):
        render_page("preferences", {"tenant_name": "Acme"})
    with pytest.raises(TemplateNotFound):
        render_page("../email/spring_offer", {})
    assert set(PAGES) == {"unsubscribe", "unsubscribed", "preferences", "link_not_found"}


def test_link_not_found_page() -> None:
    page = render_page("link_not_found", {})
    assert "Link not recognised" in page
    tags(page)


def test_builtin_templates_are_package_data() -> None:
    root = builtin_templates()
    for sub in ("email", "sms", "pages"):
        assert (root / sub / "__init__.py").is_file()  # a package, so setuptools ships it
