"""What a browser would submit for a form of a page: its successful controls, read from the
HTML with the standard library's parser (inputs with their value, ticked boxes, the selected
option, textareas), so HTTP-level tests post a form as the page shows it, then change a field."""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["form_fields"]


class _Fields(HTMLParser):
    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None
        self.textareas: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "name" not in a and tag != "option":
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in {"submit", "button", "image", "file"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.fields[a["name"]] = a.get("value", "on" if kind in {"checkbox", "radio"} else "")
        elif tag == "select":
            self._select, self._select_first = a["name"], None
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
                self.fields.setdefault(self._select, value)
            if "selected" in a:
                self.fields[self._select] = value
        elif tag == "textarea":
            self._textarea = a["name"]
            self.textareas.add(a["name"])
            self.fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.fields[self._textarea] += data


def form_fields(html: str, form_id: str) -> dict[str, str]:
    """The fields the form `form_id` would send as it stands (a textarea's leading newline,
    which HTML drops, is dropped too)."""
    parser = _Fields(form_id)
    parser.feed(html)
    return {name: value.removeprefix("\n") if name in parser.textareas else value
            for name, value in parser.fields.items()}
