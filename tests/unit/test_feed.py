"""Feed parsing (CSV, JSON Lines, URL lists, stdin) and the feed producer against a fake Kafka."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import CatalogueFields, ImageRequest, Topic
from producers.feed import (
    FeedFormat,
    FeedItem,
    SkippedRow,
    SkipReason,
    catalogue_fields,
    detect_format,
    feed_name_for,
    items_from_records,
    read_feed,
)
from producers.image_feed import FeedProducer
from tests.support.producer import FakeFuture, FakeProducer


def parse(text: str, fmt: FeedFormat = FeedFormat.AUTO, **kwargs: Any) -> list[Any]:
    return list(read_feed(io.StringIO(text), fmt, **kwargs))


def items(rows: list[Any]) -> list[FeedItem]:
    return [r for r in rows if isinstance(r, FeedItem)]


def skips(rows: list[Any]) -> list[tuple[int, SkipReason]]:
    return [(r.line, r.reason) for r in rows if isinstance(r, SkippedRow)]


@pytest.mark.parametrize(
    ("text", "expected_items", "expected_skips"),
    [
        pytest.param(
            "id,title,brand,price,image_link,link\n"
            "a1,Blue shirt,Acme,19.90,https://x.test/a1.jpg,https://x.test/p/a1\n",
            [("a1", "https://x.test/a1.jpg")],
            [],
            id="csv-google-merchant",
        ),
        pytest.param(
            "sku,imageUrl\ns1,https://x.test/s1.jpg\n",
            [("s1", "https://x.test/s1.jpg")],
            [],
            id="csv-camel-case-url-column",
        ),
        pytest.param(
            "Product ID,Image URL\np1,https://x.test/p1.jpg\n",
            [("p1", "https://x.test/p1.jpg")],
            [],
            id="csv-spaced-headers",
        ),
        pytest.param(
            "item_id,image\ni1,https://x.test/i1.jpg\n",
            [("i1", "https://x.test/i1.jpg")],
            [],
            id="csv-image-column",
        ),
        pytest.param(
            "id,image_url\n\n  \nb1,https://x.test/b1.jpg\n\n",
            [("b1", "https://x.test/b1.jpg")],
            [],
            id="csv-blank-lines-ignored",
        ),
        pytest.param(
            "id,image_link\n,https://x.test/none.jpg\nc2,\nc3,https://x.test/c3.jpg\n",
            [("c3", "https://x.test/c3.jpg")],
            [(2, SkipReason.MISSING_ID), (3, SkipReason.MISSING_URL)],
            id="csv-missing-id-and-url",
        ),
        pytest.param(
            "title,image_link\nno id column,https://x.test/1.jpg\n",
            [],
            [(2, SkipReason.MISSING_ID)],
            id="csv-no-id-column",
        ),
        pytest.param(
            "id,title\nd1,no url column\n",
            [],
            [(2, SkipReason.MISSING_URL)],
            id="csv-no-url-column",
        ),
        pytest.param(
            "id,image_link\nd1,https://x.test/1.jpg\nd1,https://x.test/2.jpg\nd2,https://x.test/3.jpg\n",
            [("d1", "https://x.test/1.jpg"), ("d2", "https://x.test/3.jpg")],
            [(3, SkipReason.DUPLICATE_ID)],
            id="csv-duplicate-id-keeps-first",
        ),
        pytest.param(
            "id,image_link\ne1,https://x.test/1.jpg,surplus\ne2,https://x.test/2.jpg\n",
            [("e2", "https://x.test/2.jpg")],
            [(2, SkipReason.BAD_ROW)],
            id="csv-more-fields-than-header",
        ),
        pytest.param(
            'id,title,image_link\nq1,"a title\nspanning lines",https://x.test/q1.jpg\n',
            [("q1", "https://x.test/q1.jpg")],
            [],
            id="csv-quoted-multiline-field",
        ),
        pytest.param(
            '{"id": "j1", "image_link": "https://x.test/j1.jpg", "price": 12.5}\n'
            "\n"
            '{"id": 7, "imageUrl": "https://x.test/7.jpg"}\n',
            [("j1", "https://x.test/j1.jpg"), ("7", "https://x.test/7.jpg")],
            [],
            id="jsonl-numeric-id-and-blank-line",
        ),
        pytest.param(
            '{"id": "j1", "image_link": "https://x.test/j1.jpg"}\n'
            "{not json\n"
            '["a", "list"]\n'
            '{"id": "j2"}\n'
            '{"image_url": "https://x.test/noid.jpg"}\n'
            '{"id": {"nested": 1}, "image_url": "https://x.test/obj.jpg"}\n',
            [("j1", "https://x.test/j1.jpg")],
            [
                (2, SkipReason.BAD_JSON),
                (3, SkipReason.NOT_AN_OBJECT),
                (4, SkipReason.MISSING_URL),
                (5, SkipReason.MISSING_ID),
                (6, SkipReason.MISSING_ID),
            ],
            id="jsonl-bad-lines",
        ),
        pytest.param(
            "https://x.test/u1.jpg\n# a comment\n\nhttps://x.test/u2.jpg\nhttps://x.test/u1.jpg\n",
            None,
            [(5, SkipReason.DUPLICATE_ID)],
            id="url-list",
        ),
    ],
)
def test_feed_parsing_table(
    text: str,
    expected_items: list[tuple[str, str]] | None,
    expected_skips: list[tuple[int, SkipReason]],
) -> None:
    rows = parse(text)
    if expected_items is not None:
        assert [(i.item_id, i.image_url) for i in items(rows)] == expected_items
    assert skips(rows) == expected_skips


def test_other_columns_become_attributes() -> None:
    (item,) = items(
        parse(
            "id,title,brand,price,image_link,link,empty\n"
            "a1,Blue shirt,Acme,19.90,https://x.test/a1.jpg,https://x.test/p/a1,\n"
        )
    )
    assert item.attributes == {
        "title": "Blue shirt",
        "brand": "Acme",
        "price": "19.90",
        "link": "https://x.test/p/a1",
    }
    (json_item,) = items(
        parse('{"id": "x", "image_url": "u", "price": 9.5, "sale": true, "tags": ["a", "b"]}\n')
    )
    assert json_item.attributes == {"price": 9.5, "sale": True, "tags": '["a","b"]'}


def test_url_list_ids_are_derived_from_the_url_and_stable() -> None:
    first = items(parse("https://x.test/u1.jpg\nhttps://x.test/u2.jpg\n"))
    again = items(parse("https://x.test/u1.jpg\n"))
    assert first[0].item_id == again[0].item_id
    assert first[0].item_id != first[1].item_id


def test_base_url_resolves_relative_links() -> None:
    (item,) = items(parse("id,image_link\na,dress-1.jpg\n", base_url="http://127.0.0.2:8000/"))
    assert item.image_url == "http://127.0.0.2:8000/dress-1.jpg"


def test_a_bom_and_tabs_are_understood() -> None:
    text = "\ufeffid\timage_link\tbrand\nt1\thttps://x.test/t1.jpg\tAcme\n"
    (item,) = items(parse(text))
    assert (item.item_id, item.attributes) == ("t1", {"brand": "Acme"})


@pytest.mark.parametrize(
    ("path", "first_line", "expected"),
    [
        ("feed.csv", '{"looks": "like json"}', FeedFormat.CSV),
        ("feed.jsonl", "id,image_link", FeedFormat.JSONL),
        ("feed.ndjson", "", FeedFormat.JSONL),
        ("urls.txt", "id,image", FeedFormat.URLS),
        (None, '  {"id": 1}', FeedFormat.JSONL),
        (None, "https://x.test/a.jpg", FeedFormat.URLS),
        (None, "id,image_link", FeedFormat.CSV),
    ],
)
def test_format_detection(path: str | None, first_line: str, expected: FeedFormat) -> None:
    assert detect_format(Path(path) if path else None, first_line) is expected


def test_records_from_python_get_the_same_checks() -> None:
    rows = list(
        items_from_records(
            [
                {"id": "a", "image_link": "https://x.test/a.jpg", "brand": "B"},
                {"id": "a", "image_link": "https://x.test/a2.jpg"},
                {"image_link": "https://x.test/b.jpg"},
                "not a mapping",  # type: ignore[list-item]
            ]
        )
    )
    assert [(i.item_id, i.attributes) for i in items(rows)] == [("a", {"brand": "B"})]
    assert skips(rows) == [
        (2, SkipReason.DUPLICATE_ID),
        (3, SkipReason.MISSING_ID),
        (4, SkipReason.NOT_AN_OBJECT),
    ]


def test_feed_name_defaults_to_the_file_stem() -> None:
    assert feed_name_for("/data/spring-catalogue.csv") == "spring-catalogue"
    assert feed_name_for("-") == "stdin"


# ---------------------------------------------------------------------------------------------
# the producer, against a fake kafka-python producer


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_feed_producer_sends_keyed_requests_and_reports(tmp_path: Path) -> None:
    feed = tmp_path / "spring.csv"
    feed.write_text(
        "id,title,image_link\n"
        "a,Shirt,https://x.test/a.jpg\n"
        ",No id,https://x.test/x.jpg\n"
        "b,Dress,https://x.test/b.jpg\n"
        "a,Again,https://x.test/a2.jpg\n"
    )
    registry = CollectorRegistry()
    fake = FakeProducer()
    producer = FeedProducer(fake, Metrics(registry, process_metrics=False), clock=lambda: 1000.0)
    report = producer.send_file(str(feed))

    assert report.feed == "spring"
    assert (report.read, report.sent) == (2, 2)
    assert dict(report.skipped) == {"missing_id": 1, "duplicate_id": 1}
    assert report.ok
    assert fake.flushed == 1
    topics = {t for t, _, _, _ in fake.sent}
    assert topics == {Topic.IMAGES.value}
    keys = [k for _, k, _, _ in fake.sent]
    assert keys == [b"a", b"b"]
    request = ImageRequest.from_json(fake.sent[0][2])
    assert request == ImageRequest(
        feed="spring",
        item_id="a",
        image_url="https://x.test/a.jpg",
        submitted_at=1000.0,
        attributes={"title": "Shirt"},
        catalogue=CatalogueFields(title="Shirt"),  # read once, here in the producer
    )
    assert metric(registry, "fashionstream_feed_items_sent_total", source="spring") == 2
    assert (
        metric(
            registry, "fashionstream_feed_items_skipped_total", source="spring", reason="missing_id"
        )
        == 1
    )
    assert "2 sent, 2 skipped" in report.summary()


def test_feed_producer_counts_delivery_failures_and_fails_only_when_nothing_was_sent() -> None:
    registry = CollectorRegistry()
    fake = FakeProducer(fail_keys=frozenset({b"a"}))
    producer = FeedProducer(fake, Metrics(registry, process_metrics=False))
    report = producer.send_records(
        [
            {"id": "a", "image_url": "https://x.test/a"},
            {"id": "b", "image_url": "https://x.test/b"},
        ],
        feed="f",
    )
    assert (report.sent, report.skipped["delivery_failed"]) == (1, 1)
    assert report.ok
    assert dict(report.delivery_errors) == {"RuntimeError": 1}

    nothing = FeedProducer(FakeProducer(fail_keys=frozenset({b"a"})), Metrics(CollectorRegistry()))
    failed = nothing.send_records([{"id": "a", "image_url": "u"}], feed="g")
    assert not failed.ok


def test_cli_reads_stdin_and_exits_nonzero_when_nothing_is_sent() -> None:
    # every row malformed: nothing to send, so no broker is contacted and the exit status is 1
    result = subprocess.run(
        [sys.executable, "-m", "fashionstream", "produce", "images", "-", "--no-progress"],
        input=json.dumps({"title": "no id, no url"}) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "FASHIONSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "FASHIONSTREAM_PRODUCER_METRICS_PORT": "0",
            "PATH": "",
        },
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "feed stdin: 0 sent, 1 skipped" in result.stdout
    assert "missing_id" in result.stdout


# ---------------------------------------------------------------------------------------------
# dirty feeds (issue 9, case 6): the producer skips the bad row with its line and reason, never
# dies, and sends every other row -- before and after the bad one


def send_dirty(path: Path, **kwargs: Any) -> tuple[Any, FakeProducer]:
    fake = FakeProducer()
    producer = FeedProducer(fake, Metrics(CollectorRegistry(), process_metrics=False), **kwargs)
    return producer.send_file(str(path)), fake


def sent_ids(fake: FakeProducer) -> list[str]:
    return [ImageRequest.from_json(v).item_id for _t, _k, v, _h in fake.sent if v is not None]


def skipped_lines(report: Any) -> dict[int, str]:
    return {row.line: row.reason.value for row in report.examples}


def test_a_csv_field_over_the_csv_modules_limit_skips_only_its_row(tmp_path: Path) -> None:
    feed = tmp_path / "big.csv"
    feed.write_text(
        "id,image_link,description\n"
        "a,https://x.test/a.jpg,fine\n"
        f"b,https://x.test/b.jpg,{'x' * 131_073}\n"
        "c,https://x.test/c.jpg,fine\n"
    )
    report, fake = send_dirty(feed)
    assert sent_ids(fake) == ["a", "c"]
    assert skipped_lines(report) == {3: "field_too_large"}
    assert "line 3" in report.summary()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bytes_that_are_not_utf8_skip_only_their_line(tmp_path: Path, suffix: str) -> None:
    feed = tmp_path / f"latin1{suffix}"
    if suffix == ".csv":
        lines = [
            b"id,image_link,title",
            b"a,https://x.test/a.jpg,ok",
            b"b,https://x.test/b.jpg,caf\xe9",
            b"c,https://x.test/c.jpg,ok",
        ]
    else:
        lines = [
            b'{"id": "a", "image_link": "https://x.test/a.jpg"}',
            b'{"id": "b", "image_link": "https://x.test/b.jpg", "title": "caf\xe9"}',
            b'{"id": "c", "image_link": "https://x.test/c.jpg"}',
        ]
    feed.write_bytes(b"\n".join(lines) + b"\n")
    report, fake = send_dirty(feed)
    assert sent_ids(fake) == ["a", "c"]
    bad_line = 3 if suffix == ".csv" else 2
    assert skipped_lines(report) == {bad_line: "not_utf8"}


def test_a_lone_surrogate_in_an_id_skips_only_its_row(tmp_path: Path) -> None:
    feed = tmp_path / "surrogate.jsonl"
    feed.write_text(
        '{"id": "a", "image_link": "https://x.test/a.jpg"}\n'
        '{"id": "b\\ud800", "image_link": "https://x.test/b.jpg"}\n'
        '{"id": "c", "image_link": "https://x.test/c.jpg", "title": "\\udc00"}\n'
        '{"id": "d", "image_link": "https://x.test/d.jpg"}\n'
    )
    report, fake = send_dirty(feed)
    assert sent_ids(fake) == ["a", "d"]
    assert skipped_lines(report) == {2: "not_utf8", 3: "not_utf8"}


def test_an_id_over_the_length_limit_is_skipped_with_a_clear_reason(tmp_path: Path) -> None:
    feed = tmp_path / "long.csv"
    feed.write_text(f"id,image_link\na,https://x.test/a.jpg\n{'z' * 4000},https://x.test/z.jpg\n")
    report, fake = send_dirty(feed)
    assert sent_ids(fake) == ["a"]
    assert skipped_lines(report) == {3: "id_too_long"}
    assert "4000 characters" in report.examples[0].detail


def test_a_row_too_large_for_one_kafka_message_is_skipped(tmp_path: Path) -> None:
    feed = tmp_path / "huge.jsonl"
    rows = [
        {"id": "a", "image_link": "https://x.test/a.jpg"},
        {"id": "b", "image_link": "https://x.test/b.jpg", "description": "d" * 50_000},
        {"id": "c", "image_link": "https://x.test/c.jpg"},
    ]
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report, fake = send_dirty(feed, max_message_bytes=20_000)
    assert sent_ids(fake) == ["a", "c"]
    assert skipped_lines(report) == {2: "oversize_row"}


def test_a_row_whose_send_raises_is_skipped_and_the_rest_sent(tmp_path: Path) -> None:
    class Refusing(FakeProducer):
        def send(
            self,
            topic: str,
            value: bytes | None = None,
            key: bytes | None = None,
            headers: Any = None,
        ) -> FakeFuture:
            if key == b"b":
                raise RuntimeError("this producer does not like b")
            return super().send(topic, value, key, headers)

    fake = Refusing()
    producer = FeedProducer(fake, Metrics(CollectorRegistry(), process_metrics=False))
    report = producer.send_records(
        [{"id": i, "image_url": f"https://x.test/{i}"} for i in "abc"], feed="f"
    )
    assert sent_ids(fake) == ["a", "c"]
    assert dict(report.skipped) == {"internal_error": 1}
    assert "RuntimeError" in report.examples[0].detail


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (
            {"title": "Shirt", "brand": "Acme", "price": 19.5, "link": "https://s/1"},
            CatalogueFields("Shirt", "Acme", Decimal("19.5"), None, "https://s/1"),
        ),
        (
            {"Product Name": "Dress", "g:price": "1,299.00 usd", "product_url": "u"},
            CatalogueFields("Dress", None, Decimal("1299.00"), "USD", "u"),
        ),
        (
            {"productDisplayName": "Tee", "price": "EUR 5", "currency": "gbp"},
            CatalogueFields("Tee", None, Decimal("5"), "gbp", None),
        ),
        ({"price": "call us"}, CatalogueFields(None, None, None, None, None)),
        ({"price": -3}, CatalogueFields(None, None, None, None, None)),
        ({"price": float("nan")}, CatalogueFields(None, None, None, None, None)),
        ({"price": True, "title": ""}, CatalogueFields(None, None, None, None, None)),
        ({}, CatalogueFields(None, None, None, None, None)),
    ],
    ids=["plain", "merchant-price", "explicit-currency", "unreadable", "negative", "nan",
         "bool-and-blank", "empty"],
)  # fmt: skip
def test_catalogue_fields_from_feed_columns(
    attributes: dict[str, Any], expected: CatalogueFields
) -> None:
    assert catalogue_fields(attributes) == expected
