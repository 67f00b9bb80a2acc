"""The unsubscribe and preference-centre pages (built-in `templates/pages/*.html`).

The API serves them for the links in every bulk message: `/u/{token}` shows `unsubscribe`
(its form posts `List-Unsubscribe=One-Click` back to the same URL, exactly what a mailbox
provider's RFC 8058 one-click POST sends) and then `unsubscribed`; `/p/{token}` shows
`preferences`; a token that does not verify gets `link_not_found` (404). Page variables are
listed in docs/render.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from engine.render.errors import TemplateNotFound
from engine.render.lookup import builtin_templates
from engine.render.sandbox import CompiledTemplate, compile_template

PAGES = ("unsubscribe", "unsubscribed", "preferences", "link_not_found")
_PAGE_NAME = re.compile(r"[a-z_]+")


def render_page(name: str, context: Mapping[str, object]) -> str:
    """The HTML of the built-in page `name` (one of PAGES), autoescaped."""
    return _page(name).render(context)


@functools.cache
def _page(name: str) -> CompiledTemplate:
    page = builtin_templates() / "pages" / f"{name}.html"
    if not _PAGE_NAME.fullmatch(name) or not page.is_file():
        raise TemplateNotFound(name, [str(page)])
    return compile_template(page.read_text(encoding="utf-8"), origin=str(page), html=True)
