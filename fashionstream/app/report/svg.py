"""Hand-written inline SVG charts for the report: horizontal bars (with colour swatches and trend
marks), a line per series over days, and small bar multiples.

Why SVG by hand and not matplotlib: the charts are simple (bars, lines), the HTML must be one
self-contained file, and vector text stays sharp at any zoom and prints well; SVG inside the page
is searchable, styled by the page's own font, a few KB per chart, and needs no plotting library
(matplotlib would add ~40 MB to the install and a PNG per chart). Every text is escaped."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Okabe-Ito: a categorical palette that colour-blind readers can tell apart
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
BAR = "#3b6ea8"
MUTED = "#6b7280"
UP = "#15803d"
DOWN = "#b91c1c"
FONT = "font-family='system-ui,-apple-system,Segoe UI,Roboto,sans-serif'"


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    previous: int | None = None  # the same label's value in the previous period
    rgb: tuple[int, int, int] | None = None  # a colour swatch (colour charts)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def hex_rgb(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(min(255, max(0, int(v))) for v in rgb))


def change(value: int, previous: int | None) -> tuple[str, str] | None:
    """(text, colour) of a trend mark: "▲ 25%", "▼ 10%", "new", or "=" ; None when unknown."""
    if previous is None:
        return None
    if previous == 0:
        return ("new", UP) if value > 0 else ("=", MUTED)
    pct = round(100.0 * (value - previous) / previous)
    if pct == 0:
        return ("= 0%", MUTED)
    return (f"▲ {pct}%", UP) if pct > 0 else (f"▼ {-pct}%", DOWN)


def no_data(width: int, height: int, text: str = "No data in this period") -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' {_size(width)}"
        f" viewBox='0 0 {width} {height}' role='img' aria-label='{esc(text)}'>"
        f"<rect width='{width}' height='{height}' rx='6' fill='#f3f4f6'/>"
        f"<text x='{width / 2}' y='{height / 2 + 5}' text-anchor='middle' fill='{MUTED}'"
        f" font-size='14' {FONT}>{esc(text)}</text></svg>"
    )


def bar_chart(bars: Sequence[Bar], *, width: int = 460, title: str = "") -> str:
    """Horizontal bars, largest first as given, each with its count and its trend mark."""
    if not bars or max(b.value for b in bars) <= 0:
        return no_data(width, 120)
    row, top, label_w, right_w = 24, 6, 132, 92
    swatch = 18 if any(b.rgb is not None for b in bars) else 0
    height = top + row * len(bars) + 4
    plot_w = width - label_w - swatch - right_w
    peak = max(b.value for b in bars)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' {_size(width)}"
        f" viewBox='0 0 {width} {height}' role='img' aria-label='{esc(title)}' {FONT}>"
    ]
    for i, b in enumerate(bars):
        y = top + i * row
        label = b.label if len(b.label) <= 20 else b.label[:19] + "…"
        parts.append(
            f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end' font-size='12'"
            f" fill='#111827'><title>{esc(b.label)}</title>{esc(label)}</text>"
        )
        fill = BAR
        if b.rgb is not None:
            fill = hex_rgb(b.rgb)
            parts.append(
                f"<rect x='{label_w}' y='{y + 4}' width='13' height='13' rx='2' fill='{fill}'"
                " stroke='#9ca3af'/>"
            )
        bar_w = max(2.0, plot_w * b.value / peak)
        parts.append(
            f"<rect x='{label_w + swatch}' y='{y + 3}' width='{bar_w:.1f}' height='16' rx='3'"
            f" fill='{fill}' stroke='#9ca3af' stroke-width='{0.6 if b.rgb else 0}'>"
            f"<title>{esc(b.label)}: {b.value}</title></rect>"
        )
        x = label_w + swatch + bar_w + 5
        parts.append(
            f"<text x='{x:.1f}' y='{y + 15}' font-size='12' font-weight='600'"
            f" fill='#111827'>{b.value}</text>"
        )
        mark = change(b.value, b.previous)
        if mark is not None:
            parts.append(
                f"<text x='{width - 4}' y='{y + 15}' text-anchor='end' font-size='11'"
                f" fill='{mark[1]}'>{esc(mark[0])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    days: Sequence[dt.date],
    series: Mapping[str, Sequence[int]],
    *,
    width: int = 940,
    height: int = 240,
    title: str = "",
) -> str:
    """One line per series over `days` (values aligned with them), with a legend."""
    if not days or not series or max((max(v) for v in series.values() if v), default=0) <= 0:
        return no_data(width, 120)
    left, right, top, bottom = 44, 210, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(v) for v in series.values())
    step = _nice_step(peak)
    ceiling = step * -(-peak // step)

    def x_of(i: int) -> float:
        return left + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - v / ceiling)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' {_size(width)}"
        f" viewBox='0 0 {width} {height}' role='img' aria-label='{esc(title)}' {FONT}>"
    ]
    for tick in range(0, ceiling + 1, step):
        y = y_of(tick)
        parts.append(
            f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e5e7eb'/>"
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' font-size='11'"
            f" fill='{MUTED}'>{tick}</text>"
        )
    every = max(1, -(-len(days) // 10))
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f"<text x='{x_of(i):.1f}' y='{height - 10}' text-anchor='middle' font-size='11'"
                f" fill='{MUTED}'>{day.strftime('%d %b')}</text>"
            )
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='2.5'"
            " stroke-linejoin='round'/>"
        )
        for i, v in enumerate(values):
            parts.append(
                f"<circle cx='{x_of(i):.1f}' cy='{y_of(v):.1f}' r='3.5' fill='{colour}'>"
                f"<title>{esc(name)} {days[i].isoformat()}: {v}</title></circle>"
            )
        ly = top + 8 + 20 * n
        label = name if len(name) <= 22 else name[:21] + "…"
        parts.append(
            f"<rect x='{width - right + 16}' y='{ly - 9}' width='12' height='12' rx='2'"
            f" fill='{colour}'/><text x='{width - right + 34}' y='{ly + 1}' font-size='12'"
            f" fill='#111827'>{esc(label)} ({sum(values)})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _size(width: int) -> str:
    # scales down to its card (the viewBox keeps the proportions), never up past its design
    return f"style='display:block;width:100%;max-width:{width}px;height:auto'"


def _nice_step(peak: int) -> int:
    """A round tick step giving 3-6 gridlines up to `peak`."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 5:
            return step
    return 10 ** len(str(peak))
