"""Finding a campaign's template files (FORMATS.md, "Templates").

`template: NAME` is `templates/<channel>/NAME.txt` (for email also `NAME.html`; either may
carry an extra `.j2` suffix) next to the campaign file first, then among the built-in
templates (the `templates` package). A value containing `/` is a path relative to the
campaign file, naming the text template; an email's HTML part is its `.html` sibling, if
there is one.

The text and HTML of one template always come from the same directory: a local `NAME.txt`
never pairs with a built-in `NAME.html`. The sources are returned (not only paths) so that
the launch can snapshot exactly what it compiled, and a resumed campaign renders the same
text even if the files changed since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from engine.render.errors import InvalidTemplateError, RenderError, TemplateNotFound

CHANNELS = ("email", "sms")


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """The source text of one campaign template, and where it came from."""

    channel: str
    name: str  # as written in the campaign definition
    text: str  # the text part of an email, or the SMS body
    text_origin: str  # the file it was read from (or "snapshot:...")
    html: str | None = None
    html_origin: str | None = None
    builtin: bool = False

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy for the campaign's launch record."""
        return {
            "channel": self.channel,
            "name": self.name,
            "text": self.text,
            "text_origin": self.text_origin,
            "html": self.html,
            "html_origin": self.html_origin,
            "builtin": self.builtin,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, object]) -> TemplateSource:
        """The inverse of `snapshot`."""
        html = data.get("html")
        html_origin = data.get("html_origin")
        return cls(
            channel=str(data["channel"]),
            name=str(data["name"]),
            text=str(data["text"]),
            text_origin=str(data["text_origin"]),
            html=None if html is None else str(html),
            html_origin=None if html_origin is None else str(html_origin),
            builtin=bool(data.get("builtin", False)),
        )


def builtin_templates() -> Traversable:
    """The directory of the built-in templates (the `templates` package)."""
    return resources.files("templates")


def find_templates(
    channel: str,
    name: str,
    campaign_dir: str | Path,
    *,
    builtin_dir: Traversable | Path | None = None,
) -> TemplateSource:
    """Find and read the template `name` of a `channel` campaign defined in `campaign_dir`.

    Raises `TemplateNotFound` (with every place searched) when there is no text template,
    `InvalidTemplateError` when a file is not UTF-8.
    """
    if channel not in CHANNELS:
        raise RenderError(f"no templates for channel {channel!r} (expected one of {CHANNELS})")
    name = name.strip()
    if not name:
        raise TemplateNotFound(name, (), hint="the template name is empty")
    campaign_dir = Path(campaign_dir)
    if "/" in name:
        return _find_by_path(channel, name, campaign_dir)

    searched: list[str] = []
    places: list[tuple[Traversable | Path, bool]] = [
        (campaign_dir / "templates" / channel, False),
        ((builtin_dir if builtin_dir is not None else builtin_templates()) / channel, True),
    ]
    for directory, builtin in places:
        text_file = _first_file(directory, [f"{name}.txt", f"{name}.txt.j2"], searched)
        html_file = None
        if channel == "email":
            html_file = _first_file(directory, [f"{name}.html", f"{name}.html.j2"], searched)
        if text_file is not None:
            return _read(channel, name, text_file, html_file, builtin=builtin)
        if html_file is not None:
            raise TemplateNotFound(
                name,
                searched,
                hint=f"{html_file} has no {name}.txt beside it: an email needs a text part",
            )
    raise TemplateNotFound(name, searched)


def _find_by_path(channel: str, name: str, campaign_dir: Path) -> TemplateSource:
    path = campaign_dir / name
    searched: list[str] = []
    if path.name.endswith((".txt", ".j2")):
        candidates = [path.name]
    else:
        candidates = [path.name + ".txt", path.name + ".txt.j2", path.name]
    text_file = _first_file(path.parent, candidates, searched)
    if text_file is None:
        raise TemplateNotFound(name, searched)
    html_file = None
    if channel == "email":
        stem = text_file.name
        for suffix in (".txt.j2", ".txt", ".j2"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        html_file = _first_file(path.parent, [f"{stem}.html", f"{stem}.html.j2"], [])
    return _read(channel, name, text_file, html_file, builtin=False)


def _first_file(
    directory: Traversable | Path, names: list[str], searched: list[str]
) -> Traversable | Path | None:
    for file_name in names:
        candidate = directory / file_name
        searched.append(str(candidate))
        if candidate.is_file():
            return candidate
    return None


def _read(
    channel: str,
    name: str,
    text_file: Traversable | Path,
    html_file: Traversable | Path | None,
    *,
    builtin: bool,
) -> TemplateSource:
    return TemplateSource(
        channel=channel,
        name=name,
        text=_read_text(text_file),
        text_origin=str(text_file),
        html=_read_text(html_file) if html_file is not None else None,
        html_origin=str(html_file) if html_file is not None else None,
        builtin=builtin,
    )


def _read_text(file: Traversable | Path) -> str:
    try:
        # utf-8-sig: editors on Windows like to start files with a byte order mark.
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 ({exc.reason} at byte {exc.start})"
        raise InvalidTemplateError(str(file), message) from exc
