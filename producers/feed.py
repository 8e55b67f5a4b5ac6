"""Catalogue feed reading: CSV, JSON Lines or a plain URL list into validated feed rows.

Pure parsing, no Kafka: `read_feed` yields a `FeedItem` per usable row and a `SkippedRow` (with
its line and reason) per malformed one, so the producer can report both.

Dirty files never stop the parse: bytes that are not UTF-8 are read as lone surrogates
(`surrogateescape`) and the row holding them is skipped (`not_utf8`), as is a JSON row whose text
holds a lone surrogate (`"\ud800"`: no UTF-8 for it); a CSV field over the csv module's limit
skips its row (`field_too_large`); an id over `MAX_ID_CHARS` skips its row (`id_too_long`); and
whatever else a row raises skips that row (`internal_error`, with the exception's type).
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

from fashionstream.core.records import MAX_ID_CHARS, MAX_PRICE, CatalogueFields

AttributeValue = str | int | float | bool | None

# Column names seen in catalogue feeds (Google Merchant, Shopify, Meta catalogues, hand-made CSVs),
# compared after lower-casing and dropping everything but letters and digits ("imageUrl",
# "image_url" and "Image URL" are the same column). The first alias present wins.
ID_ALIASES = ("id", "item_id", "itemid", "sku", "product_id", "productid", "g:id", "offer_id")
URL_ALIASES = (
    "image_link",
    "image_url",
    "imageUrl",
    "image",
    "g:image_link",
    "img_url",
    "image_src",
    "picture_url",
)


def normalise_column(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# catalogue columns kept as typed fields of the record (CatalogueFields), matched the same way;
# the first present and non-empty wins
CATALOGUE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "title": ("title", "name", "productname", "productdisplayname", "gtitle"),
    "brand": ("brand", "gbrand", "manufacturer", "vendor"),
    "price": ("price", "gprice", "saleprice"),
    "currency": ("currency", "pricecurrency"),
    "link": ("link", "productlink", "producturl", "url", "glink", "pageurl"),
}

_ID_KEYS = tuple(dict.fromkeys(normalise_column(a) for a in ID_ALIASES))
_URL_KEYS = tuple(dict.fromkeys(normalise_column(a) for a in URL_ALIASES))


class FeedFormat(enum.StrEnum):
    AUTO = "auto"  # by file suffix, else by the first non-blank character
    CSV = "csv"
    JSONL = "jsonl"
    URLS = "urls"  # one image URL per line; the item id is derived from the URL


class SkipReason(enum.StrEnum):
    """Why a feed row was not sent. The producer's metric label and summary key."""

    MISSING_ID = "missing_id"
    MISSING_URL = "missing_url"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ROW = "bad_row"  # e.g. a CSV row with more fields than the header
    DUPLICATE_ID = "duplicate_id"  # a later row with an id already sent in this run
    NOT_UTF8 = "not_utf8"  # bytes that are not UTF-8, or text (a lone surrogate) UTF-8 cannot hold
    FIELD_TOO_LARGE = "field_too_large"  # a CSV field over the csv module's field size limit
    ID_TOO_LONG = "id_too_long"  # an item id over MAX_ID_CHARS
    OVERSIZE_ROW = "oversize_row"  # the row's request would be over max_message_bytes
    INTERNAL_ERROR = "internal_error"  # reading or sending the row raised what nobody foresaw


@dataclass(frozen=True)
class FeedItem:
    """One usable feed row: an item id, its image URL, and every other column as attributes."""

    line: int
    item_id: str
    image_url: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    catalogue: CatalogueFields = field(default_factory=CatalogueFields)  # read from `attributes`


@dataclass(frozen=True)
class SkippedRow:
    line: int
    reason: SkipReason
    detail: str


FeedRow = FeedItem | SkippedRow


def detect_format(path: Path | None, first_line: str) -> FeedFormat:
    """The feed's format from its suffix, else from its first non-blank line."""
    if path is not None:
        suffix = path.suffix.lower()
        if suffix in {".jsonl", ".ndjson", ".json"}:
            return FeedFormat.JSONL
        if suffix in {".csv", ".tsv"}:
            return FeedFormat.CSV
        if suffix in {".txt", ".urls"}:
            return FeedFormat.URLS
    stripped = first_line.lstrip("\ufeff").strip()
    if stripped.startswith(("{", "[")):
        return FeedFormat.JSONL
    if re.match(r"^https?://\S+$", stripped, re.IGNORECASE):
        return FeedFormat.URLS
    return FeedFormat.CSV


def read_feed(
    stream: IO[str],
    fmt: FeedFormat = FeedFormat.AUTO,
    *,
    path: Path | None = None,
    base_url: str | None = None,
) -> Iterator[FeedRow]:
    """Parse an open text stream (a file or stdin). Duplicate ids after the first are skipped."""
    lines = _LineCounter(stream)
    if fmt is FeedFormat.AUTO:
        fmt = detect_format(path, lines.peek_first_nonblank())
    if fmt is FeedFormat.CSV:
        rows: Iterator[FeedRow] = _parse_csv(lines, base_url)
    elif fmt is FeedFormat.JSONL:
        rows = _parse_jsonl(lines, base_url)
    else:
        rows = _parse_urls(lines, base_url)
    return _drop_duplicates(rows)


def items_from_records(
    records: Iterable[Mapping[str, Any]], *, base_url: str | None = None
) -> Iterator[FeedRow]:
    """Rows already parsed into mappings (e.g. built in Python): the same validation and
    duplicate handling as a file. `line` is the 1-based position in `records`."""

    def rows() -> Iterator[FeedRow]:
        for n, record in enumerate(records, start=1):
            if not isinstance(record, Mapping):
                yield SkippedRow(n, SkipReason.NOT_AN_OBJECT, f"row {n} is not a mapping")
                continue
            yield _checked_row(n, record, base_url)

    return _drop_duplicates(rows())


def open_feed(source: str) -> IO[str]:
    """A text stream over `source`: a path, or `-` for stdin. UTF-8, a BOM is dropped; bytes
    that are not UTF-8 become lone surrogates (their rows are skipped by the parser, the rest of
    the file is read)."""
    if source == "-":
        import sys

        return io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
    return Path(source).open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def feed_name_for(source: str) -> str:
    """The default source id of a feed: the file's stem, `stdin` for `-`."""
    return "stdin" if source == "-" else Path(source).stem or "feed"


# ---------------------------------------------------------------------------------------------


class _LineCounter:
    """Iterates a text stream's lines, counting them, with a look-ahead at the first one."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._buffered: list[str] = []
        self._first: str | None = None
        self.line = 0

    def peek_first_nonblank(self) -> str:
        if self._first is None:
            self._first = ""
            for raw in self._stream:
                self._buffered.append(raw)
                if raw.strip():
                    self._first = raw
                    break
        return self._first

    def __iter__(self) -> Iterator[str]:
        while self._buffered:
            self.line += 1
            yield self._buffered.pop(0)
        for raw in self._stream:
            self.line += 1
            yield raw


def _parse_csv(lines: _LineCounter, base_url: str | None) -> Iterator[FeedRow]:
    # csv.DictReader skips blank lines itself; `lines.line` is the last physical line the reader
    # consumed, so a row is reported by the line where it ends (quoted fields may span lines).
    first = lines.peek_first_nonblank()
    dialect: type[csv.Dialect] = csv.excel_tab if "\t" in first and "," not in first else csv.excel
    reader = csv.DictReader(iter(lines), dialect=dialect, restkey="\0extra")
    try:
        if reader.fieldnames is None:
            return
    except csv.Error as exc:
        yield SkippedRow(lines.line, SkipReason.BAD_ROW, f"line {lines.line}: header: {exc}")
        return
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # the reader starts afresh on the next line: only this row is lost
            reason = (
                SkipReason.FIELD_TOO_LARGE if "field larger" in str(exc) else SkipReason.BAD_ROW
            )
            yield SkippedRow(lines.line, reason, f"line {lines.line}: {exc}")
            continue
        line = lines.line
        if "\0extra" in record:
            yield SkippedRow(line, SkipReason.BAD_ROW, f"line {line}: more fields than the header")
            continue
        cleaned = {k: v for k, v in record.items() if k is not None and v is not None}
        if not any(v.strip() for v in cleaned.values()):
            continue  # a line of only spaces or separators: as blank as an empty one
        yield _checked_row(line, cleaned, base_url)


def _parse_jsonl(lines: _LineCounter, base_url: str | None) -> Iterator[FeedRow]:
    for raw in lines:
        line = lines.line
        text = raw.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield SkippedRow(line, SkipReason.BAD_JSON, f"line {line}: {message}")
            continue
        if not isinstance(record, dict):
            yield SkippedRow(
                line, SkipReason.NOT_AN_OBJECT, f"line {line}: a {type(record).__name__}"
            )
            continue
        yield _checked_row(line, record, base_url)


def _parse_urls(lines: _LineCounter, base_url: str | None) -> Iterator[FeedRow]:
    for raw in lines:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if not _is_utf8(text):
            yield SkippedRow(lines.line, SkipReason.NOT_UTF8, f"line {lines.line}: {NOT_UTF8}")
            continue
        url = _resolve(text, base_url)
        yield FeedItem(lines.line, item_id_for_url(url), url, {})


def item_id_for_url(url: str) -> str:
    """The item id of an image that came without one (a URL list, an API submission without
    `id`): the URL itself is the item's identity, so the same URL is one item."""
    return "url-" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def submitted_item(
    url: str, item_id: str | None = None, attributes: Mapping[str, Any] | None = None
) -> FeedRow:
    """One item submitted on its own (the API's POST /v1/images), read as a one-row feed: the
    same id, UTF-8 and attribute rules and the same catalogue columns as a feed row."""
    record: dict[str, Any] = dict(attributes or {})
    if not _all_utf8(record) or not _all_utf8(url) or not _all_utf8(item_id or ""):
        return SkippedRow(1, SkipReason.NOT_UTF8, NOT_UTF8)
    url = url.strip()
    if not url:
        return SkippedRow(1, SkipReason.MISSING_URL, "no URL")
    item_id = item_id_for_url(url) if item_id is None else item_id.strip()
    if not item_id:
        return SkippedRow(1, SkipReason.MISSING_ID, "the item id is empty")
    if len(item_id) > MAX_ID_CHARS:
        return SkippedRow(
            1,
            SkipReason.ID_TOO_LONG,
            f"the item id is {len(item_id)} characters, over the limit of {MAX_ID_CHARS}",
        )
    kept: dict[str, AttributeValue] = {}
    for name, value in record.items():
        attribute = _attribute(value)
        if attribute is not None:
            kept[str(name)] = attribute
    return FeedItem(1, item_id, url, kept, catalogue_fields(kept))


NOT_UTF8 = "text that is not UTF-8 (undecodable bytes or a lone surrogate)"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_utf8(value: Any) -> bool:
    if isinstance(value, str):
        return _is_utf8(value)
    if isinstance(value, dict):
        return all(_all_utf8(k) and _all_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_utf8(v) for v in value)
    return True


def _checked_row(line: int, record: Mapping[str, Any], base_url: str | None) -> FeedRow:
    """`_item_from_mapping`, after the checks that keep one row from stopping the feed."""
    try:
        if not _all_utf8(dict(record)):
            return SkippedRow(line, SkipReason.NOT_UTF8, f"line {line}: {NOT_UTF8}")
        row = _item_from_mapping(line, record, base_url)
        if isinstance(row, FeedItem) and len(row.item_id) > MAX_ID_CHARS:
            return SkippedRow(
                line,
                SkipReason.ID_TOO_LONG,
                f"line {line}: the item id is {len(row.item_id)} characters, over the limit of"
                f" {MAX_ID_CHARS}",
            )
        return row
    except Exception as exc:  # the last resort: this row is skipped, the feed goes on
        return SkippedRow(
            line, SkipReason.INTERNAL_ERROR, f"line {line}: {type(exc).__name__}: {exc}"[:500]
        )


def _item_from_mapping(line: int, record: Mapping[str, Any], base_url: str | None) -> FeedRow:
    by_key: dict[str, str] = {}
    for name in record:
        by_key.setdefault(normalise_column(str(name)), str(name))
    id_column = next((by_key[k] for k in _ID_KEYS if k in by_key), None)
    url_column = next((by_key[k] for k in _URL_KEYS if k in by_key), None)
    item_id = _scalar_text(record.get(id_column)) if id_column else ""
    if not item_id:
        return SkippedRow(line, SkipReason.MISSING_ID, f"line {line}: no item id")
    url = _scalar_text(record.get(url_column)) if url_column else ""
    if not url:
        return SkippedRow(line, SkipReason.MISSING_URL, f"line {line}: item {item_id!r} has no URL")
    attributes: dict[str, AttributeValue] = {}
    for name, value in record.items():
        if name in (id_column, url_column):
            continue
        kept = _attribute(value)
        if kept is not None:
            attributes[str(name)] = kept
    return FeedItem(
        line, item_id, _resolve(url, base_url), attributes, catalogue_fields(attributes)
    )


def catalogue_fields(attributes: Mapping[str, Any]) -> CatalogueFields:
    """Title, brand, price, currency and product link from a feed row's columns: the one place
    they are interpreted (the sink writes what this returns). A price like "19.99 USD" (Google
    Merchant) gives both the amount and the currency; an unreadable price is left to the raw
    attributes rather than refusing the row."""
    by_key: dict[str, Any] = {}
    for name, value in attributes.items():
        by_key.setdefault(normalise_column(name), value)

    def first(field: str) -> Any:
        for alias in CATALOGUE_ALIASES[field]:
            value = by_key.get(alias)
            if value not in (None, ""):
                return value
        return None

    price, currency = _price(first("price"))
    explicit_currency = first("currency")
    return CatalogueFields(
        title=_text(first("title")),
        brand=_text(first("brand")),
        price=price,
        currency=_text(explicit_currency) if explicit_currency is not None else currency,
        link=_text(first("link")),
    )


def _price(value: Any) -> tuple[Decimal | None, str | None]:
    if value is None or isinstance(value, bool):
        return None, None
    if isinstance(value, int | float):
        return _decimal(str(value)), None
    match = re.fullmatch(
        r"\s*([A-Za-z]{3})?\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*([A-Za-z]{3})?\s*", str(value)
    )
    if match is None:
        return None, None
    amount = _decimal(match.group(2).replace(",", ""))
    currency = match.group(1) or match.group(3)
    return amount, currency.upper() if currency else None


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value >= MAX_PRICE:
        return None  # not a price Postgres' numeric(14, 4) column holds
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) or None


def _scalar_text(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _attribute(value: Any) -> AttributeValue:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return None


def _resolve(url: str, base_url: str | None) -> str:
    return urljoin(base_url, url) if base_url else url


def _drop_duplicates(rows: Iterator[FeedRow]) -> Iterator[FeedRow]:
    seen: set[str] = set()
    for row in rows:
        if isinstance(row, FeedItem):
            if row.item_id in seen:
                yield SkippedRow(
                    row.line,
                    SkipReason.DUPLICATE_ID,
                    f"line {row.line}: item id {row.item_id!r} already seen",
                )
                continue
            seen.add(row.item_id)
        yield row
