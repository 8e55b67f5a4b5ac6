"""Catalogue feeds -> `fashion.images.v1`: one `ImageRequest` per item, keyed by item id.

Malformed rows are skipped with their line and reason (and counted in a metric); the report
counts only records the broker acknowledged, after a flush.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.errors import (  # a send when no broker answers within max_block_ms
    KafkaError,
    KafkaTimeoutError,
)

from fashionstream.core.errors import DeadLetterReason, PipelineError
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import ImageRequest, Topic
from fashionstream.core.settings import Settings
from producers.feed import (
    FeedFormat,
    FeedItem,
    FeedRow,
    SkippedRow,
    SkipReason,
    feed_name_for,
    items_from_records,
    open_feed,
    read_feed,
)
from producers.kafka import Deliveries, RecordProducer, build_producer

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0
DELIVERY_FAILED = "delivery_failed"  # skip reason for records the broker never acknowledged
SKIPPED_ROWS_KEPT = 20  # skipped rows listed in the summary; the rest are only counted


class DeliveryFailedError(Exception):
    """A request the broker did not acknowledge (unreachable, or it refused the record)."""


@dataclass
class FeedReport:
    feed: str
    read: int = 0  # usable rows handed to Kafka
    sent: int = 0  # acknowledged by the broker
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[SkippedRow] = field(default_factory=list)  # the first few skipped rows
    delivery_errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def ok(self) -> bool:
        """False only when nothing could be sent: the CLI's exit status."""
        return self.sent > 0

    def summary(self) -> str:
        lines = [f"feed {self.feed}: {self.sent} sent, {sum(self.skipped.values())} skipped"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {count:>6}  {reason}")
        for error, count in sorted(self.delivery_errors.items()):
            lines.append(f"  failed  {count:>6}  {error}")
        for row in self.examples:
            lines.append(f"  e.g. {row.detail}")
        return "\n".join(lines)


class FeedProducer:
    """Sends catalogue items to Kafka. Build with `from_settings`; tests inject a fake producer."""

    def __init__(
        self,
        producer: RecordProducer,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
        max_message_bytes: int = Settings.max_message_bytes,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._flush_timeout_s = flush_timeout_s
        self._max_message_bytes = max_message_bytes

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> FeedProducer:
        return cls(
            build_producer(settings, client_id="fashionstream-feed"),
            metrics,
            max_message_bytes=settings.max_message_bytes,
        )

    def close(self) -> None:
        self._producer.close(timeout=self._flush_timeout_s)

    def send_file(
        self,
        source: str,
        *,
        feed: str | None = None,
        fmt: FeedFormat = FeedFormat.AUTO,
        base_url: str | None = None,
        progress: bool = False,
    ) -> FeedReport:
        """A CSV / JSON Lines / URL-list file, or `-` for stdin. `feed` defaults to the stem."""
        name = feed or feed_name_for(source)
        with open_feed(source) as stream:
            path = None if source == "-" else Path(source)
            rows = read_feed(stream, fmt, path=path, base_url=base_url)
            return self.send_rows(rows, feed=name, progress=progress)

    def send_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        feed: str,
        base_url: str | None = None,
        progress: bool = False,
    ) -> FeedReport:
        """Rows as mappings (column -> value), e.g. built by the demo: same aliases and checks
        as a file."""
        return self.send_rows(items_from_records(records, base_url=base_url), feed, progress)

    def send_rows(self, rows: Iterable[FeedRow], feed: str, progress: bool = False) -> FeedReport:
        """Send every FeedItem, count every SkippedRow, flush, and report."""
        report = FeedReport(feed=feed)
        deliveries = Deliveries()
        sent_metric = self._metrics.items_sent.labels(feed)
        out_metric = self._metrics.messages_out.labels(Topic.IMAGES)
        bytes_metric = self._metrics.message_bytes_out.labels(Topic.IMAGES)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="item", desc=feed)
        try:
            for row in rows:
                if isinstance(row, SkippedRow):
                    self._skip(report, row)
                    continue
                try:
                    self._send(row, feed, report, deliveries, sent_metric, out_metric, bytes_metric)
                except KafkaTimeoutError:
                    raise  # the broker cannot be reached: no further row would fare better
                except Exception as exc:  # the last resort: this row is skipped, not the feed
                    log.error("line %d could not be sent", row.line, exc_info=exc)
                    detail = f"line {row.line}: {type(exc).__name__}: {exc}"[:500]
                    self._skip(report, SkippedRow(row.line, SkipReason.INTERNAL_ERROR, detail))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            deliveries.wait(self._producer, self._flush_timeout_s)
        report.sent = deliveries.delivered
        report.delivery_errors.update(deliveries.failed)
        if deliveries.failed_total:
            report.skipped[DELIVERY_FAILED] += deliveries.failed_total
        log.info("%s", report.summary())
        return report

    def _send(
        self,
        item: FeedItem,
        feed: str,
        report: FeedReport,
        deliveries: Deliveries,
        sent_metric: Any,
        out_metric: Any,
        bytes_metric: Any,
    ) -> None:
        request = self._request(item, feed)
        key, value = request.to_kafka()
        if len(value) + len(key) > self._max_message_bytes:
            self._skip(
                report,
                SkippedRow(
                    item.line,
                    SkipReason.OVERSIZE_ROW,
                    f"line {item.line}: the request would be {len(value) + len(key)} bytes, over"
                    f" max_message_bytes={self._max_message_bytes}",
                ),
            )
            return
        future = self._producer.send(Topic.IMAGES.value, value=value, key=key)
        report.read += 1
        size = len(value)
        skipped_metric = self._metrics.items_skipped

        def delivered() -> None:
            sent_metric.inc()
            out_metric.inc()
            bytes_metric.inc(size)

        def failed(_exc: BaseException) -> None:
            skipped_metric.labels(feed, DELIVERY_FAILED).inc()

        deliveries.track(future, delivered, failed)

    def send_one(self, item: FeedItem, feed: str) -> ImageRequest:
        """One item, sent and acknowledged by the broker before this returns: the API's submit,
        the same request, key and topic as a feed row. Blocks: call it from a worker thread.

        Raises PipelineError(OVERSIZE_MESSAGE) for a request over max_message_bytes, and
        DeliveryFailedError when the broker did not acknowledge it within the flush timeout.
        """
        request = self._request(item, feed)
        key, value = request.to_kafka()
        if len(value) + len(key) > self._max_message_bytes:
            raise PipelineError(
                DeadLetterReason.OVERSIZE_MESSAGE,
                f"the request would be {len(value) + len(key)} bytes, over"
                f" max_message_bytes={self._max_message_bytes}",
            )
        deliveries = Deliveries()
        try:
            deliveries.track(self._producer.send(Topic.IMAGES.value, value=value, key=key))
            deliveries.wait(self._producer, self._flush_timeout_s)
        except KafkaError as exc:  # no broker (NoBrokersAvailable, KafkaTimeoutError, ...)
            raise DeliveryFailedError(f"the broker did not answer: {exc}") from exc
        if deliveries.delivered < 1:
            failed = ", ".join(sorted(deliveries.failed)) or "no acknowledgement"
            raise DeliveryFailedError(f"the broker did not acknowledge the request ({failed})")
        self._metrics.items_sent.labels(feed).inc()
        self._metrics.messages_out.labels(Topic.IMAGES).inc()
        self._metrics.message_bytes_out.labels(Topic.IMAGES).inc(len(value))
        return request

    def _request(self, item: FeedItem, feed: str) -> ImageRequest:
        return ImageRequest(
            feed=feed,
            item_id=item.item_id,
            image_url=item.image_url,
            submitted_at=self._clock(),
            attributes=dict(item.attributes),
            catalogue=item.catalogue,
        )

    def _skip(self, report: FeedReport, row: SkippedRow) -> None:
        report.skipped[row.reason.value] += 1
        if len(report.examples) < SKIPPED_ROWS_KEPT:
            report.examples.append(row)
        self._metrics.items_skipped.labels(report.feed, row.reason.value).inc()
        log.debug("skipped %s", row.detail)


def produce_feed(
    settings: Settings,
    rows: Iterable[Mapping[str, Any]],
    *,
    feed: str,
    base_url: str | None = None,
    metrics: Metrics | None = None,
) -> FeedReport:
    """Send catalogue rows (column -> value mappings, as in a CSV) and wait for the broker.

    For the demo and benchmarks: builds a producer, sends, flushes, closes. `report.sent` counts
    acknowledged items, `report.skipped` the rows left out by reason.
    """
    from prometheus_client import CollectorRegistry

    producer = FeedProducer.from_settings(
        settings, metrics or Metrics(CollectorRegistry(), process_metrics=False)
    )
    try:
        return producer.send_records(rows, feed=feed, base_url=base_url)
    finally:
        producer.close()
