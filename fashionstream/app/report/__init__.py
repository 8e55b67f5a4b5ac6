"""The popular-items report: `build_report(...)` -> `Report` (data; `.to_json()`), drawn as one
HTML page by `render_html(report)`."""

from fashionstream.app.report.model import (
    CatalogueMatch,
    Report,
    SimilarItems,
    StreetGarmentRef,
    Trend,
    build_report,
)
from fashionstream.app.report.page import render_html
from fashionstream.app.report.period import parse_period

__all__ = [
    "CatalogueMatch",
    "Report",
    "SimilarItems",
    "StreetGarmentRef",
    "Trend",
    "build_report",
    "parse_period",
    "render_html",
]
