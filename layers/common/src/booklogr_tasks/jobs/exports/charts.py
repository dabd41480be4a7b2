"""Bar charts as inline SVG, drawn on the server: no script, no fonts or images to fetch.

Every bar carries its number as text at its end, so a chart reads in black and white and in
print; a bar may have a hatched part (e.g. books dated by when they were added rather than
finished), told apart by its pattern, not by colour. Labels are user text (author names): they
are escaped here, and the result is Markup for the autoescaping template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

# Drawn at about the size a chart gets in the page (half a 60rem column), so its text stays at
# the page's small-print size; it scales with the column on narrower screens and in print.
WIDTH = 420
LABEL_WIDTH = 140  # the label column, right-aligned against the bars
VALUE_WIDTH = 76  # room after the longest bar for its number
BAR_HEIGHT = 18
GAP = 7
FONT_PX = 13
# About the width of an average character of the page's sans-serif at FONT_PX. A label that may
# be wider than its column is cut to MAX_LABEL characters and squeezed into the column
# (textLength), so no label runs off the chart whatever its characters.
CHAR_PX = 6.6
MAX_LABEL = 26


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    hatched: int = 0  # how much of `value` is drawn hatched
    text: str | None = None  # what the bar says; the value itself when None


def fmt_int(value: int) -> str:
    return f"{value:,}"


def _px(value: float) -> str:
    return f"{value:.1f}"


# Every piece is a Markup template: Markup.format() escapes each value it fills in, so user
# text (labels, descriptions) can only ever land in the SVG as text.
_SVG_OPEN = Markup(
    '<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
    'role="img" aria-label="{description}">'
    '<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" class="hatch-bg"/>'
    '<line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>'
)
_ROW_OPEN = Markup("<g><title>{label}: {said}</title>")
_LABEL = Markup(
    '<text x="{x}" y="{y}" class="label" text-anchor="end" dominant-baseline="central">'
    "{text}</text>"
)
_LABEL_SQUEEZED = Markup(
    '<text x="{x}" y="{y}" class="label" text-anchor="end" dominant-baseline="central" '
    'textLength="{room}" lengthAdjust="spacingAndGlyphs">{text}</text>'
)
_BAR = Markup('<rect x="{x}" y="{y}" width="{width}" height="{height}" class="bar"/>')
_HATCHED = Markup(
    '<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="url(#{hatch})" '
    'class="bar-hatched"/>'
)
_VALUE = Markup('<text x="{x}" y="{y}" class="value" dominant-baseline="central">{said}</text></g>')
_SVG_CLOSE = Markup("</svg>")


def _label(label: str, x: float, y: float, room: float) -> Markup:
    text = label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1].rstrip() + "…"
    if len(text) * CHAR_PX > room * 0.9:
        return _LABEL_SQUEEZED.format(x=_px(x), y=_px(y), room=_px(room), text=text)
    return _LABEL.format(x=_px(x), y=_px(y), text=text)


def bar_chart(chart_id: str, bars: Sequence[Bar], description: str) -> Markup:
    """A horizontal bar chart: one row per bar, longest bar the largest value.

    `chart_id` must be unique in the page (it names the hatch pattern); `description` is the
    chart's accessible name.
    """
    most = max((b.value for b in bars), default=0) or 1
    room = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = len(bars) * (BAR_HEIGHT + GAP) + GAP
    hatch = f"{chart_id}-hatch"
    parts = [_SVG_OPEN.format(width=WIDTH, height=height, description=description, hatch=hatch)]
    for row, bar in enumerate(bars):
        y = GAP + row * (BAR_HEIGHT + GAP)
        middle = y + BAR_HEIGHT / 2
        length = room * bar.value / most
        solid = room * (bar.value - bar.hatched) / most
        said = bar.text if bar.text is not None else fmt_int(bar.value)
        parts.append(_ROW_OPEN.format(label=bar.label, said=said))
        parts.append(_label(bar.label, LABEL_WIDTH - 8, middle, LABEL_WIDTH - 12))
        if solid > 0:
            parts.append(
                _BAR.format(x=LABEL_WIDTH, y=y, width=_px(max(solid, 1)), height=BAR_HEIGHT)
            )
        if bar.hatched:
            parts.append(
                _HATCHED.format(
                    x=_px(LABEL_WIDTH + solid),
                    y=y,
                    width=_px(max(length - solid, 1)),
                    height=BAR_HEIGHT,
                    hatch=hatch,
                )
            )
        parts.append(_VALUE.format(x=_px(LABEL_WIDTH + length + 6), y=_px(middle), said=said))
    parts.append(_SVG_CLOSE)
    return Markup("").join(parts)
