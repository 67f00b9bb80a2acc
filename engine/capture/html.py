"""The capture servers' HTML view: the newest captured messages of both channels, one page.

Served at `GET /` by the SMS capture server (the one that speaks HTTP). Every value comes
from a message someone sent, so everything is escaped; the page reloads itself every five
seconds so a running campaign can be watched.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .2em}
p.note{color:#666;margin:0 0 1em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.35em .6em;border-bottom:1px solid #ddd}
th{background:#f4f4f4;position:sticky;top:0}
td.when{white-space:nowrap;color:#555;font-family:monospace}
td.body{white-space:pre-wrap;max-width:60em}
span.channel{font-size:.8em;padding:.1em .45em;border-radius:.6em;color:#fff}
span.email{background:#3b6fb6}
span.sms{background:#2e8b57}
details summary{cursor:pointer;color:#3b6fb6}
"""


def render_messages_page(messages: list[dict[str, Any]], store_path: Path,
                         statuses: dict[str, str] | None = None) -> str:
    """The page for `messages` (oldest first, as read from the store); newest shown first."""
    statuses = statuses or {}
    rows = [_row(message, statuses) for message in reversed(messages)]
    empty = '<tr><td colspan="6">No messages captured yet.</td></tr>'
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\"5\">"
        "<title>Consentry capture</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Consentry capture</h1>"
        f"<p class=\"note\">The newest {len(messages)} messages in {escape(str(store_path))} "
        "(email and SMS), newest first. JSON: <a href=\"/_capture/messages.json\">"
        "/_capture/messages.json</a></p>"
        "<table><thead><tr><th>received (UTC)</th><th>channel</th><th>from</th><th>to</th>"
        "<th>subject / body</th><th>id</th></tr></thead><tbody>"
        + ("".join(rows) or empty)
        + "</tbody></table></body></html>"
    )


def _row(message: dict[str, Any], statuses: dict[str, str]) -> str:
    channel = str(message.get("channel", ""))
    identifier = message.get("message_id") or message.get("sid") or ""
    status = statuses.get(str(message.get("sid")), "")
    if channel == "email":
        headers = "\n".join(f"{name}: {value}" for name, value in message.get("headers") or [])
        content = (
            f"<strong>{escape(str(message.get('subject', '')))}</strong>"
            f"<details><summary>text and headers</summary>"
            f"<div class=\"body\">{escape(str(message.get('body', '')))}</div>"
            f"<pre>{escape(headers)}</pre></details>"
        )
    else:
        content = escape(str(message.get("body", "")))
    return (
        f"<tr><td class=\"when\">{escape(str(message.get('received_at', '')))}</td>"
        f"<td><span class=\"channel {escape(channel)}\">{escape(channel)}</span></td>"
        f"<td>{escape(str(message.get('from', '')))}</td>"
        f"<td>{escape(str(message.get('to', '')))}</td>"
        f"<td class=\"body\">{content}</td>"
        f"<td><code>{escape(str(identifier))}</code>"
        + (f"<br>{escape(status)}" if status else "")
        + "</td></tr>"
    )
