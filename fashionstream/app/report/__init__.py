"""The popular-items report: `build_report(...)` -> `Report` (`.to_json()`, `.to_html()`)."""

from fashionstream.app.report.model import (
    CatalogueMatch,
    Report,
    SimilarItems,
    StreetGarmentRef,
    Trend,
    build_report,
)
from fashionstream.app.report.period import parse_period

__all__ = [
    "CatalogueMatch",
    "Report",
    "SimilarItems",
    "StreetGarmentRef",
    "Trend",
    "build_report",
    "parse_period",
]
