"""Every fashionstream Prometheus metric, defined once against an injected `CollectorRegistry`,
and the /metrics HTTP server each process runs.

Names follow `fashionstream_<what>_<unit>` with base units (seconds, bytes; counters end in
`_total` on the wire). Labels are bounded: topic, stage, reason, table, source kind, a feed or
camera id (a deployment has a handful), Kafka partition. Never a URL, item id or event id.

Usage: build one `Metrics(registry)` per process at the entry point and pass it down; tests build
their own on a fresh `CollectorRegistry()`. Attribute names are a contract shared by producers,
stream processors and sinks: add new ones, do not rename.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

NAMESPACE = "fashionstream"


class Stage(enum.StrEnum):
    """Values of the `stage` label (and `DeadLetter.stage`)."""

    PRODUCE = "produce"  # a producer reading a feed or decoding video, up to the Kafka send
    FETCH = "fetch"  # downloading a catalogue image
    DECODE = "decode"  # bytes -> RGB array (JPEG or image file)
    INFER = "infer"  # the tagger's forward passes for a batch
    TAG = "tag"  # the tagging agent around inference (adapters, encoding the results)
    SINK = "sink"  # writing a batch to Postgres, commit included
    TRACK = "track"  # tracking a batch of camera frames and committing its sightings


class SourceState(enum.StrEnum):
    """Values of the `state` label of `source_state`: what a video source is doing now."""

    CONNECTING = "connecting"  # opening the file or stream
    STREAMING = "streaming"  # frames are being read and sent
    RECONNECTING = "reconnecting"  # a live source dropped; waiting out the backoff
    ENDED = "ended"  # a recording was read to its end
    STOPPED = "stopped"  # stopped on request (a live session, an interrupted recording)
    FAILED = "failed"  # could not be opened or holds no video


class SinkErrorKind(enum.StrEnum):
    """Values of the `error` label of `sink_errors`."""

    UNAVAILABLE = "unavailable"  # connection refused or lost: the batch is retried
    REJECTED = "rejected"  # Postgres refused a record: it is dead-lettered


# Bucket edges in seconds. Stage work ranges from a JPEG decode (ms) to a CPU Mask R-CNN batch
# (tens of seconds); end-to-end adds queueing behind a backlog, so it reaches ten minutes.
STAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
END_TO_END_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SOURCE_GAP_BUCKETS_S = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class Metrics:
    """All metrics of all fashionstream processes, registered on `registry`.

    One instance per registry: building a second one on the same registry raises ValueError
    (duplicate timeseries), which is how an accidental second set of metrics shows up.
    """

    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        if process_metrics:
            # process_cpu_seconds_total, process_resident_memory_bytes, python_info ...
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(
                name, doc, labels, namespace=NAMESPACE, registry=registry, buckets=buckets
            )

        # --- Kafka traffic (stream processors and producers)
        self.messages_in = counter(
            "messages_in", "Kafka records consumed, per topic", ("topic",)
        )  # fashionstream_messages_in_total
        self.messages_out = counter("messages_out", "Kafka records produced, per topic", ("topic",))
        self.message_bytes_out = counter(
            "messages_out_bytes", "bytes of Kafka record values produced, per topic", ("topic",)
        )  # fashionstream_messages_out_bytes_total
        self.dead_letters = counter(
            "dead_letters",
            "records sent to the dead-letter topic, by reason and the stage that failed",
            ("reason", "stage"),
        )
        self.dead_letters_failed = counter(
            "dead_letters_failed",
            "records that could not even be dead-lettered (logged and skipped so that their"
            " partition moves on), by the stage that failed",
            ("stage",),
        )
        self.consumer_lag = gauge(
            "consumer_lag_messages",
            "records between the committed offset of the worker's group and the end of the"
            " partition",
            ("topic", "partition"),
        )

        # --- batching and latency
        self.batch_size = histogram(
            "batch_size_records",
            "records per batch taken from a stream (stage infer or sink)",
            ("stage",),
            BATCH_SIZE_BUCKETS,
        )
        self.stage_duration = histogram(
            "stage_duration_seconds",
            "time spent in one stage: per image for fetch/decode, per batch for infer/sink",
            ("stage",),
            STAGE_BUCKETS_S,
        )
        self.end_to_end_latency = histogram(
            "end_to_end_latency_seconds",
            "from entering Kafka (a feed item's submission, a camera frame's send) until its"
            " rows are committed in Postgres",
            ("source_kind",),
            END_TO_END_BUCKETS_S,
        )

        # --- Postgres sink
        self.rows_written = counter(
            "rows_written", "rows inserted or updated in Postgres, per table", ("table",)
        )
        self.sink_errors = counter(
            "sink_errors",
            "failed Postgres writes: 'unavailable' (retried) or 'rejected' (dead-lettered)",
            ("error",),
        )

        # --- catalogue feed producer and fetch agent
        self.items_sent = counter(
            "feed_items_sent", "catalogue items sent to Kafka, per feed", ("source",)
        )
        self.items_skipped = counter(
            "feed_items_skipped",
            "catalogue feed rows not sent, per feed and reason (e.g. bad_record, duplicate)",
            ("source", "reason"),
        )
        self.bytes_fetched = counter(
            "fetch_bytes", "image bytes downloaded by the fetch agent, per feed", ("source",)
        )  # fashionstream_fetch_bytes_total

        # --- video producer (camera is a bounded label: a deployment names its cameras)
        self.frames_decoded = counter(
            "video_frames_decoded", "video frames decoded, per camera", ("camera",)
        )
        self.frames_sent = counter(
            "video_frames_sent", "sampled frames sent to Kafka, per camera", ("camera",)
        )
        self.frames_dropped = counter(
            "video_frames_dropped",
            "sampled frames not sent, per camera and reason (fall_behind, oversize_message, ...)",
            ("camera", "reason"),
        )
        self.video_decode_errors = counter(
            "video_decode_errors",
            "packets or frames that failed to decode, per camera",
            ("camera",),
        )
        self.source_lag = gauge(
            "source_lag_seconds",
            "wall clock minus the capture time of the last frame sent, per camera",
            ("camera",),
        )
        self.reconnects = counter(
            "source_reconnects", "reconnects to a live video source, per camera", ("camera",)
        )
        self.source_gap = histogram(
            "source_gap_seconds",
            "seconds between the last frame before a live source was lost and the first frame"
            " after it came back, one observation per return, per camera",
            ("camera",),
            SOURCE_GAP_BUCKETS_S,
        )
        self.source_state = gauge(
            "source_state",
            "1 for the state a camera's video source is in now, 0 for the others"
            " (connecting, streaming, reconnecting, ended, stopped, failed)",
            ("camera", "state"),
        )

        # --- live cameras as the worker sees them
        self.camera_last_frame = gauge(
            "camera_last_frame_timestamp_seconds",
            "capture time (epoch seconds) of the newest live frame the worker received, per"
            " camera: time() minus it is how long the camera has been silent",
            ("camera",),
        )
        self.frames_skipped = counter(
            "camera_frames_skipped",
            "live frames the worker did not tag, per camera and reason (stale: older than"
            " live_max_age_s when inference could start; fresher frames of the camera follow)",
            ("camera", "reason"),
        )

        # --- tracking (stream processor) and sightings
        self.tracks_active = gauge(
            "active_tracks", "people tracked right now (open sightings), per camera", ("camera",)
        )
        self.sightings = counter(
            "sightings",
            "sightings emitted (a tracked person whose track ended), per camera and why it ended",
            ("camera", "reason"),
        )
        self.tracks_discarded = counter(
            "tracks_discarded",
            "tracks that ended before they had enough frames to be a sighting, per camera",
            ("camera",),
        )
        self.tracking_frames = counter(
            "tracking_frames",
            "camera frames the tracker received, per camera and outcome (tracked, duplicate,"
            " late, invalid)",
            ("camera", "outcome"),
        )

        # --- HTTP API (route: the route's template, e.g. /v1/images/{event_id}; "unmatched"
        # when no route served the request -- an unknown path, or one refused before routing
        # (401 without a key, 413 over the body limit) -- so a scan of random paths adds no
        # series)
        self.api_requests = counter(
            "api_requests",
            "HTTP API requests answered, per route template, method and status code",
            ("route", "method", "status"),
        )
        self.api_request_duration = histogram(
            "api_request_duration_seconds",
            "HTTP API request latency, per route template and method",
            ("route", "method"),
            STAGE_BUCKETS_S,
        )

    def set_source_state(self, camera: str, state: SourceState) -> None:
        """Mark `state` as the camera's current source state (1), every other state 0."""
        for other in SourceState:
            self.source_state.labels(camera, other.value).set(1.0 if other is state else 0.0)


@dataclass
class MetricsServer:
    """A running /metrics endpoint (prometheus_client's WSGI server on a daemon thread)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer | None:
    """Serve `registry` on http://host:port/metrics from a daemon thread; port 0 serves nothing.

    Raises OSError when the port is taken, so a second process on the same port fails loudly.
    """
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise ValueError(f"metrics port must be in 1..65535 (or 0 for none), got {port}")
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)
