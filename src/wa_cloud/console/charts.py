"""Charts drawn on the server as inline SVG: a pure function from numbers to markup.

No chart library and no script: the page's Content-Security-Policy allows neither inline
script nor inline style, and SVG presentation attributes (fill, width, ...) are neither. Every
label is escaped; the chart names itself (<title>, <desc>) for screen readers, and each bar
carries its value as a tooltip (<title>). Pages show the same numbers as a table besides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

# The drawing's own units; CSS scales the whole drawing to its box.
WIDTH: Final = 720
HEIGHT: Final = 240
_LEFT: Final = 44  # room for the value axis' labels
_RIGHT: Final = 8
_TOP: Final = 28  # room for the legend
_BOTTOM: Final = 28  # room for the category labels
# Colour-blind-safe pair (Okabe-Ito), each with 3:1 contrast or more against white.
COLOURS: Final = ("#0072b2", "#d55e00", "#009e73", "#cc79a7")


@dataclass(frozen=True, slots=True)
class Group:
    """One category (a day) with a value per series."""

    label: str
    values: tuple[int, ...]


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten at or above `value` (at least 1): the top
    of the value axis, so its halfway mark is a round number too."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bar_chart(
    title: str,
    description: str,
    series: Sequence[str],
    groups: Sequence[Group],
    *,
    label_every: int = 1,
    chart_id: str = "chart",
) -> Markup:
    """Grouped bars, one group per category and one bar per series, as an <svg> element.

    `label_every`: label every n-th category (and the last), so thirty days stay legible.
    `chart_id` makes the ids of the title and description unique on the page."""
    if any(len(g.values) != len(series) for g in groups):
        raise ValueError("every group needs one value per series")
    if any(v < 0 for g in groups for v in g.values):
        raise ValueError("bar values must not be negative")
    top = nice_ceiling(max((v for g in groups for v in g.values), default=0))
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    baseline = _TOP + plot_height
    slot = plot_width / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)

    def y(value: int) -> float:
        return baseline - plot_height * value / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="bar-chart" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    # The legend, top right: a swatch and the series' name each.
    for number, name in enumerate(reversed(series)):
        right = WIDTH - _RIGHT - number * 110
        colour = COLOURS[(len(series) - 1 - number) % len(COLOURS)]
        parts.append(
            f'<rect x="{right - 100}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{right - 84}" y="14" font-size="12" fill="#1f2328">{escape(name)}</text>'
        )
    # The value axis: zero, half and the top, with light grid lines.
    for mark in sorted({0, top // 2, top}):
        at = _num(y(mark))
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{at}" y2="{at}" '
            f'stroke="{"#57606a" if mark == 0 else "#d0d7de"}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{at}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="11" fill="#4f5b66">{mark}</text>'
        )
    for index, group in enumerate(groups):
        left = _LEFT + index * slot + slot * 0.1
        parts.append(f'<g class="group"><title>{escape(_summary(group, series))}</title>')
        for number, value in enumerate(group.values):
            height = baseline - y(value)
            parts.append(
                f'<rect class="series-{number}" x="{_num(left + number * bar)}" '
                f'y="{_num(y(value))}" width="{_num(max(bar - 1, 1))}" height="{_num(height)}" '
                f'fill="{COLOURS[number % len(COLOURS)]}"/>'
            )
        parts.append("</g>")
        if index % label_every == 0 or index == len(groups) - 1:
            parts.append(
                f'<text x="{_num(_LEFT + (index + 0.5) * slot)}" y="{HEIGHT - 8}" '
                f'text-anchor="middle" font-size="11" fill="#4f5b66">{escape(group.label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _summary(group: Group, series: Sequence[str]) -> str:
    return f"{group.label}: " + ", ".join(
        f"{value} {name}" for name, value in zip(series, group.values, strict=True)
    )


def _num(value: float) -> str:
    """A coordinate with at most two decimals, without trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
