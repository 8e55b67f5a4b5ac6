"""The report as one self-contained HTML page for business readers: inline CSS, inline SVG
charts (svg.py), thumbnails as data: URIs. No script, no font, no image is fetched from anywhere:
the file opens the same offline, attached to an e-mail, or printed."""

from __future__ import annotations

import base64
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fashionstream.app.report.svg import Bar, bar_chart, change, esc, hex_rgb, line_chart, no_data
from sinks.report_queries import DayCount, Dimension, Example, TopGarment

if TYPE_CHECKING:
    from fashionstream.app.report.model import CatalogueMatch, Report, Trend

_CARD_W, _CARD_H = 96, 144  # a picture's box on the page (CSS .thumbs img, .zoom)
_TITLES = {
    Dimension.CATEGORY: "Categories",
    Dimension.COLOUR: "Colours",
    Dimension.STYLE: "Styles",
    Dimension.ARTICLE_TYPE: "Article types",
}
_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#111827;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:34px 0 4px;padding-bottom:6px;border-bottom:2px solid #e5e7eb}
h3{font-size:14px;margin:0 0 8px;color:#374151;text-transform:uppercase;letter-spacing:.04em}
p.lead{color:#4b5563;margin:0 0 14px}
.meta{color:#6b7280;font-size:13px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-top:18px}
.kpi{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px #0000001a}
.kpi b{display:block;font-size:28px;line-height:1.1}
.kpi span{color:#6b7280;font-size:13px}
.kpi i{display:block;font-style:normal;font-size:12px;margin-top:2px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px #0000001a}
.multiples{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
.looks{display:grid;grid-template-columns:repeat(2,1fr);gap:12px}
.look{background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 2px #0000001a}
.look header{display:flex;align-items:center;gap:8px;margin-bottom:8px}
.look header b{font-size:15px}
.look header em{margin-left:auto;font-style:normal;color:#374151;font-weight:600}
.sw{display:inline-block;width:14px;height:14px;border-radius:3px;border:1px solid #9ca3af}
.thumbs{display:flex;gap:6px;flex-wrap:wrap}
.thumbs figure{margin:0;width:96px;text-align:center}
.thumbs img{width:96px;height:144px;object-fit:contain;background:#eef0f3;border-radius:6px}
.thumbs figcaption{font-size:11px;color:#6b7280;overflow:hidden;text-overflow:ellipsis;
 white-space:nowrap}
.zoom{width:96px;height:144px;border-radius:6px;background-color:#eef0f3;
 background-repeat:no-repeat}
.nopic{width:96px;height:144px;border-radius:6px;background:#eef0f3;color:#9ca3af;
 display:flex;align-items:center;justify-content:center;font-size:11px}
.empty{background:#fff;border:2px dashed #d1d5db;border-radius:10px;padding:28px;
 text-align:center;color:#4b5563;font-size:16px;margin-top:18px}
.note{color:#6b7280;font-size:13px}
table.matches{border-collapse:collapse;width:100%}
table.matches td{padding:6px 8px;border-top:1px solid #e5e7eb;vertical-align:middle}
footer{margin-top:36px;color:#9ca3af;font-size:12px}
@media print{body{background:#fff}.card,.kpi,.look{box-shadow:none;border:1px solid #e5e7eb}}
"""


def render_html(report: Report) -> str:
    """One self-contained HTML page (inline CSS, SVG charts, data: thumbnails)."""
    w = report.window
    zone = w.zone
    since, until = w.since.astimezone(zone), w.until.astimezone(zone)
    previous = w.previous().since.astimezone(zone)
    sources = ", ".join(w.sources) if w.sources else "all cameras and feeds"
    body = [
        "<h1>Popular items</h1>",
        f"<p class='meta'>{_when(since)} to {_when(until)} ({esc(w.timezone)}) &middot;"
        f" {esc(sources)} &middot;"
        f" trends against {_when(previous)} to {_when(since)}</p>",
    ]
    if report.unknown_sources:
        body.append(
            f"<p class='note'>Never seen, so not in this report:"
            f" {esc(', '.join(report.unknown_sources))}.</p>"
        )
    body.append(_kpis(report))
    if report.empty:
        body.append(
            "<div class='empty'><b>No data in this period.</b><br>No camera saw anyone and no"
            " catalogue image was tagged between these dates. Try a longer period"
            " (<code>--since 30d</code>) or other sources.</div>"
        )
    else:
        body += _street(report) + _catalogue(report)
    body.append(
        f"<footer>fashionstream popular-items report, generated"
        f" {_when(report.generated_at.astimezone(zone))} {esc(w.timezone)}. People are counted"
        " once per sighting (a person tracked across frames), catalogue garments once per"
        " tagged image.</footer>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Popular items {since:%Y-%m-%d} to {until:%Y-%m-%d}</title>"
        f"<style>{_CSS}</style></head><body><main>{''.join(body)}</main></body></html>"
    )


def _when(t: dt.datetime) -> str:
    return esc(t.strftime("%d %b %Y %H:%M"))


def _kpis(report: Report) -> str:
    now, before = report.totals, report.previous_totals
    cards = [
        ("People seen on camera", now.sightings, before.sightings),
        ("Garments they wore", now.street_garments, before.street_garments),
        ("Catalogue images tagged", now.catalogue_images, before.catalogue_images),
        ("Catalogue garments", now.catalogue_garments, before.catalogue_garments),
    ]
    out = []
    for label, value, prev in cards:
        mark = change(value, prev)
        trend = "" if mark is None else f"<i style='color:{mark[1]}'>{esc(mark[0])}</i>"
        out.append(f"<div class='kpi'><b>{value:,}</b><span>{esc(label)}</span>{trend}</div>")
    return f"<div class='kpis'>{''.join(out)}</div>"


def _bars(rows: Sequence[Trend], dimension: Dimension, limit: int = 10) -> list[Bar]:
    colours = dimension is Dimension.COLOUR
    return [Bar(t.label, t.count, t.previous, t.rgb if colours else None) for t in rows[:limit]]


def _four_charts(rows: Mapping[Dimension, Sequence[Trend]], what: str) -> str:
    cards = []
    for dimension in Dimension:
        chart = bar_chart(
            _bars(rows.get(dimension, ()), dimension),
            title=f"{what}: {_TITLES[dimension]}",
        )
        cards.append(f"<div class='card'><h3>{_TITLES[dimension]}</h3>{chart}</div>")
    return f"<div class='grid'>{''.join(cards)}</div>"


def _per_day(report: Report, counts: Sequence[DayCount], what: str) -> str:
    days = report.days()
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for c in counts:
        if c.day in index:
            series[c.source_id][index[c.day]] += c.count
    if len(series) > 1:
        series = {"all": [sum(v) for v in zip(*series.values(), strict=True)], **series}
    return line_chart(days, dict(series), title=what)


def _street(report: Report) -> list[str]:
    out = [
        "<h2>On camera: what people wore</h2>",
        "<p class='lead'>Each person a camera tracked counts once, however many frames showed"
        " them. Arrows compare with the previous period of the same length.</p>",
    ]
    if report.totals.sightings == 0:
        out.append(f"<div class='card'>{no_data(920, 80, 'No one was seen on camera')}</div>")
        return out
    out.append(_four_charts(report.street, "On camera"))
    out.append("<h2>People per day</h2>")
    chart = _per_day(report, report.people_per_camera_day, "People per day")
    out.append(f"<div class='card'>{chart}</div>")
    out.append(_multiples(report))
    out.append("<h2>Top street garments</h2>")
    out.append(
        "<p class='lead'>The most worn kinds of garment, with the best view of people who wore"
        " them.</p>"
    )
    out.append(_looks(report.top_street, street=True))
    out.append("<h2>Closest catalogue items to the top street garments</h2>")
    out.append(_matches(report))
    return out


def _multiples(report: Report) -> str:
    people: dict[str, int] = defaultdict(int)
    for c in report.people_per_camera_day:
        people[c.source_id] += c.count
    per_camera: dict[str, list[Bar]] = defaultdict(list)
    for row in report.camera_categories:
        if len(per_camera[row.source_id]) < 5:
            per_camera[row.source_id].append(Bar(row.label, row.count))
    cards = [
        f"<div class='card'><h3>{esc(camera)} &middot; {people[camera]} people</h3>"
        f"{bar_chart(per_camera.get(camera, []), width=280, title=camera)}</div>"
        for camera in sorted(people)
    ]
    return (
        "<h2>Per camera</h2><p class='lead'>What each camera's people wore most"
        f" (garments by category).</p><div class='multiples'>{''.join(cards)}</div>"
    )


def _img(jpeg: bytes | None, alt: str) -> str:
    if jpeg is None:
        return "<div class='nopic'>no picture</div>"
    data = base64.b64encode(jpeg).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/jpeg;base64,{data}'>"


def _zoomed(example: Example, alt: str) -> str:
    """A catalogue garment: its image's picture zoomed onto the garment's box (with a margin),
    by CSS background sizing, so a pair of shoes on a full-length photo shows the shoes."""
    if example.jpeg is None or example.box is None or example.image_size is None:
        return _img(example.jpeg, alt)
    width, height = example.image_size
    x1, y1, x2, y2 = example.box
    mx, my = 0.15 * (x2 - x1) + 4, 0.15 * (y2 - y1) + 4
    x1, y1 = max(0.0, x1 - mx), max(0.0, y1 - my)
    x2, y2 = min(float(width), x2 + mx), min(float(height), y2 + my)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return _img(example.jpeg, alt)
    scale = min(_CARD_W / (x2 - x1), _CARD_H / (y2 - y1))
    # the stored picture is at most 192x288: past 2.5x its pixels a zoom is only blur, so a
    # small garment is shown with more of its surroundings instead
    stored = min(192 / width, 288 / height, 1.0)
    scale = min(scale, 2.5 * stored)
    left = -x1 * scale + (_CARD_W - (x2 - x1) * scale) / 2
    top = -y1 * scale + (_CARD_H - (y2 - y1) * scale) / 2
    data = base64.b64encode(example.jpeg).decode("ascii")
    return (
        f"<div class='zoom' role='img' aria-label='{esc(alt)}' style=\"background-image:"
        f"url('data:image/jpeg;base64,{data}');background-size:{width * scale:.1f}px"
        f' {height * scale:.1f}px;background-position:{left:.1f}px {top:.1f}px"></div>'
    )


def _kind(g: TopGarment) -> str:
    # a calibrated "unknown" article type says less than the detector's category
    return g.article_type if g.article_type and g.article_type != "unknown" else g.category


def _looks(garments: Sequence[TopGarment], *, street: bool) -> str:
    if not garments:
        return f"<div class='card'>{no_data(920, 80)}</div>"
    cards = []
    for rank, g in enumerate(garments, 1):
        kind = _kind(g)
        figures = "".join(
            f"<figure>{_img(e.jpeg, f'{g.colour} {kind}') if street else _zoomed(e, kind)}"
            f"<figcaption title='{esc(e.title or e.reference)}'>"
            f"{esc(e.source_id if street else (e.title or e.reference))}</figcaption></figure>"
            for e in g.examples
        )
        if street:
            unit = "person" if g.count == 1 else "people"
        else:
            unit = "garment" if g.count == 1 else "garments"
        cards.append(
            f"<div class='look'><header><span>{rank}.</span>"
            f"<span class='sw' style='background:{hex_rgb(g.rgb)}'></span>"
            f"<b>{esc(g.colour)} {esc(kind)}</b><span class='note'>{esc(g.category)}</span>"
            f"<em>{g.count} {unit}</em></header><div class='thumbs'>{figures}</div></div>"
        )
    return f"<div class='looks'>{''.join(cards)}</div>"


def _matches(report: Report) -> str:
    if report.matches is None:
        return (
            "<div class='card note'>Not available: no catalogue similarity search was"
            " configured for this report.</div>"
        )
    rows = []
    for g in report.top_street:
        if not g.examples:
            continue
        first = g.examples[0]
        found: Sequence[CatalogueMatch] = report.matches.get(
            (first.reference, first.garment_index), ()
        )
        items = (
            "".join(
                f"<figure>{_img(m.jpeg, m.title or m.item_id)}<figcaption"
                f" title='{esc(m.title or m.item_id)}'>{esc(m.title or m.item_id)}"
                f" ({m.distance:.2f})</figcaption></figure>"
                for m in found
            )
            or "<span class='note'>no catalogue item found</span>"
        )
        rows.append(
            f"<tr><td style='width:110px'>{_img(g.examples[0].jpeg, g.colour)}</td>"
            f"<td style='width:170px'><b>{esc(g.colour)} {esc(_kind(g))}</b>"
            f"</td><td><div class='thumbs'>{items}</div></td></tr>"
        )
    if not rows:
        return f"<div class='card'>{no_data(920, 80)}</div>"
    return f"<div class='card'><table class='matches'>{''.join(rows)}</table></div>"


def _catalogue(report: Report) -> list[str]:
    out = [
        "<h2>Catalogue feeds</h2>",
        "<p class='lead'>Garments in the tagged catalogue images, by what the models saw.</p>",
    ]
    if report.totals.catalogue_images == 0:
        out.append(f"<div class='card'>{no_data(920, 80, 'No catalogue image was tagged')}</div>")
        return out
    out.append(_four_charts(report.catalogue, "Catalogue"))
    out.append("<h2>Catalogue garments per day</h2>")
    out.append(
        f"<div class='card'>"
        f"{_per_day(report, report.garments_per_feed_day, 'Catalogue garments per day')}</div>"
    )
    out.append("<h2>Top catalogue garments</h2>")
    out.append(_looks(report.top_catalogue, street=False))
    return out
