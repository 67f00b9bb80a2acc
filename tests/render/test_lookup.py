"""Template lookup (FORMATS.md, "Templates")."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.render import (
    InvalidTemplateError,
    RenderError,
    TemplateNotFound,
    TemplateSource,
    find_templates,
)
from tests.render.conftest import write


def test_local_template_beats_builtin(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/email/spring_offer.txt", "local text")
    write(campaign_dir / "templates/email/spring_offer.html", "<p>local</p>")
    source = find_templates("email", "spring_offer", campaign_dir)
    assert (source.text, source.html, source.builtin) == ("local text", "<p>local</p>", False)
    assert source.text_origin == str(campaign_dir / "templates/email/spring_offer.txt")


def test_builtin_template_when_no_local_one(campaign_dir: Path) -> None:
    source = find_templates("email", "spring_offer", campaign_dir)
    assert source.builtin
    assert "first_name" in source.text and source.html and "<html" in source.html
    assert source.text_origin.endswith("templates/email/spring_offer.txt")


def test_builtin_sms_templates(campaign_dir: Path) -> None:
    for name in ("live_lead", "service_reminder"):
        source = find_templates("sms", name, campaign_dir)
        assert source.builtin and source.html is None


def test_j2_suffix_is_allowed(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/email/promo.txt.j2", "text")
    write(campaign_dir / "templates/email/promo.html.j2", "<p>html</p>")
    source = find_templates("email", "promo", campaign_dir)
    assert (source.text, source.html) == ("text", "<p>html</p>")


def test_html_is_optional(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/email/plain.txt", "only text")
    source = find_templates("email", "plain", campaign_dir)
    assert source.html is None and source.html_origin is None


def test_local_text_never_pairs_with_builtin_html(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/email/newsletter.txt", "my own newsletter")
    source = find_templates("email", "newsletter", campaign_dir)
    assert source.text == "my own newsletter" and source.html is None


def test_html_without_text_is_an_error(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/email/spring_offer.html", "<p>x</p>")
    with pytest.raises(TemplateNotFound) as caught:
        find_templates("email", "spring_offer", campaign_dir)
    assert "text part" in str(caught.value)


def test_sms_ignores_html(campaign_dir: Path) -> None:
    write(campaign_dir / "templates/sms/hello.txt", "Hi")
    write(campaign_dir / "templates/sms/hello.html", "<p>no</p>")
    assert find_templates("sms", "hello", campaign_dir).html is None


def test_path_relative_to_campaign_file(campaign_dir: Path) -> None:
    write(campaign_dir / "mail/offer.txt", "text part")
    write(campaign_dir / "mail/offer.html", "<b>html part</b>")
    source = find_templates("email", "mail/offer.txt", campaign_dir)
    assert (source.text, source.html, source.builtin) == ("text part", "<b>html part</b>", False)


def test_path_html_sibling_is_optional(campaign_dir: Path) -> None:
    write(campaign_dir / "mail/offer.txt.j2", "text part")
    source = find_templates("email", "./mail/offer.txt.j2", campaign_dir)
    assert source.text == "text part" and source.html is None


def test_path_without_suffix_finds_txt(campaign_dir: Path) -> None:
    write(campaign_dir / "sms/followup.txt", "Hi {{ first_name }}")
    assert find_templates("sms", "sms/followup", campaign_dir).text == "Hi {{ first_name }}"


def test_path_is_not_searched_among_builtins(campaign_dir: Path) -> None:
    with pytest.raises(TemplateNotFound):
        find_templates("email", "email/spring_offer", campaign_dir)


def test_not_found_names_every_place_searched(campaign_dir: Path) -> None:
    with pytest.raises(TemplateNotFound) as caught:
        find_templates("email", "nope", campaign_dir)
    error = caught.value
    assert isinstance(error, RenderError) and error.exit_code == 2
    assert error.name == "nope"
    assert error.searched[0] == str(campaign_dir / "templates/email/nope.txt")
    assert any(place.endswith("templates/email/nope.txt") and str(campaign_dir) not in place
               for place in error.searched)
    assert "nope" in str(error) and str(campaign_dir) in str(error)


def test_builtin_dir_can_be_injected(campaign_dir: Path, tmp_path_factory) -> None:
    builtins = tmp_path_factory.mktemp("builtins")
    write(builtins / "sms/only_here.txt", "from the injected set")
    source = find_templates("sms", "only_here", campaign_dir, builtin_dir=builtins)
    assert source.builtin and source.text == "from the injected set"


def test_unknown_channel(campaign_dir: Path) -> None:
    with pytest.raises(RenderError):
        find_templates("fax", "x", campaign_dir)


def test_not_utf8(campaign_dir: Path) -> None:
    path = campaign_dir / "templates/sms/latin1.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes("Caf\u00e9".encode("latin-1"))
    with pytest.raises(InvalidTemplateError) as caught:
        find_templates("sms", "latin1", campaign_dir)
    assert str(path) in str(caught.value)


def test_byte_order_mark_is_dropped(campaign_dir: Path) -> None:
    path = campaign_dir / "templates/sms/bom.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbfHello")
    assert find_templates("sms", "bom", campaign_dir).text == "Hello"


def test_snapshot_round_trip(campaign_dir: Path) -> None:
    source = find_templates("email", "newsletter", campaign_dir)
    assert TemplateSource.from_snapshot(source.snapshot()) == source
