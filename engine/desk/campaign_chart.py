"""Counts per decision and reason as a horizontal bar chart, drawn on the server as SVG.

No charting library and no script: a few rectangles and labels, laid out here and printed
by templates/desk/campaign_chart.html. The chart is an image for sighted readers (role="img"
with a <title> and a <desc> that says the numbers in words); the same numbers are always in
a table beside it. Colour follows the decision, but every bar also carries its decision and
reason in words, so colour is never the only signal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gating import DecisionKind

__all__ = ["Bar", "Chart", "CountRow", "bar_chart", "count_rows"]

# Geometry in SVG user units; the SVG scales to its box (viewBox), so these are
# proportions, not pixels on screen.
WIDTH = 640
LABEL = 230  # room for "suppress · awaiting_sms_opt_in"
BAR_HEIGHT = 22
GAP = 8
VALUE_ROOM = 110  # "1,000,000 (100%)" after the longest bar

# Fill per decision; the CSS never has to know (presentation attributes are allowed by the
# desk's CSP). Contrast against white is at least 4.5:1 for each.
FILL = {DecisionKind.SEND: "#1d6b35", DecisionKind.DEFER: "#7a4d00", DecisionKind.SUPPRESS: "#a4161a"}
_ORDER = {DecisionKind.SEND: 0, DecisionKind.DEFER: 1, DecisionKind.SUPPRESS: 2}


@dataclass(frozen=True, slots=True)
class CountRow:
    decision: str
    reason: str
    count: int
    percent: float

    @property
    def label(self) -> str:
        return f"{self.decision} · {self.reason}" if self.reason else self.decision


def count_rows(counts: Iterable[tuple[str, str, int]]) -> list[CountRow]:
    """(decision, reason, count) rows merged per (decision, reason), sends first, then the
    largest; with each one's share of the total."""
    merged: dict[tuple[str, str], int] = {}
    for decision, reason, n in counts:
        merged[(decision, reason or "")] = merged.get((decision, reason or ""), 0) + n
    total = sum(merged.values())
    ordered = sorted(merged.items(), key=lambda kv: (_ORDER.get(DecisionKind(kv[0][0]), 3), -kv[1], kv[0][1]))
    return [CountRow(d, r, n, 100.0 * n / total if total else 0.0) for (d, r), n in ordered]


@dataclass(frozen=True, slots=True)
class Bar:
    y: int
    width: int
    fill: str
    label: str
    value: str

    @property
    def text_y(self) -> int:
        return self.y + BAR_HEIGHT // 2 + 5


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    description: str
    width: int
    height: int
    label_width: int
    bars: tuple[Bar, ...]


def bar_chart(rows: list[CountRow], title: str) -> Chart:
    """One bar per row, lengths proportional to the largest count."""
    largest = max((row.count for row in rows), default=0)
    room = WIDTH - LABEL - VALUE_ROOM
    bars = []
    for i, row in enumerate(rows):
        width = round(room * row.count / largest) if largest else 0
        bars.append(Bar(
            y=i * (BAR_HEIGHT + GAP), width=max(width, 1 if row.count else 0),
            fill=FILL.get(DecisionKind(row.decision), "#4a5360"), label=row.label,
            value=f"{row.count:,} ({row.percent:.1f}%)",
        ))
    description = "; ".join(f"{row.label}: {row.count:,} ({row.percent:.1f}%)" for row in rows) or "No recipients."
    height = max(len(rows) * (BAR_HEIGHT + GAP) - GAP, BAR_HEIGHT)
    return Chart(title, description, WIDTH, height, LABEL, tuple(bars))
