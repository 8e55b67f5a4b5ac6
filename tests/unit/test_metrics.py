"""fashionstream.core.metrics: every metric is served on /metrics, named
fashionstream_<what>_<unit>, with bounded labels only."""

from __future__ import annotations

import re
import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from fashionstream.core.metrics import Metrics, serve_metrics

# counts are in what they count; `state` is a state set (1 for the current state, 0 for others)
UNITS = ("seconds", "bytes", "messages", "records", "tracks", "state")
UNBOUNDED_LABELS = {"url", "image_url", "item_id", "event_id", "key", "offset", "frame_number"}
NAME = re.compile(r"^fashionstream_[a-z][a-z0-9_]*$")
# the attribute names other engineers' code uses
CONTRACT = {
    "messages_in", "messages_out", "message_bytes_out", "dead_letters", "dead_letters_failed",
    "consumer_lag",
    "batch_size", "stage_duration", "end_to_end_latency", "rows_written", "sink_errors",
    "items_sent", "items_skipped", "bytes_fetched", "frames_decoded", "frames_sent",
    "frames_dropped", "video_decode_errors", "source_lag", "reconnects",
    "source_gap", "source_state", "camera_last_frame", "frames_skipped",
    "tracks_active", "sightings", "tracks_discarded", "tracking_frames",
    "api_requests", "api_request_duration",
}  # fmt: skip


def _all_metrics(metrics: Metrics) -> dict[str, Counter | Gauge | Histogram]:
    return {
        attr: value
        for attr, value in vars(metrics).items()
        if isinstance(value, Counter | Gauge | Histogram)
    }


def _touch(metric: Counter | Gauge | Histogram) -> None:
    labels = {name: "x" for name in metric._labelnames}
    child = metric.labels(**labels) if labels else metric
    if isinstance(child, Counter):
        child.inc()
    elif isinstance(child, Gauge):
        child.set(1.0)
    else:
        child.observe(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_every_metric_is_served_with_the_naming_convention() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    defined = _all_metrics(metrics)
    assert set(defined) == CONTRACT, "Metrics attributes are a shared contract: add, never rename"
    for metric in defined.values():
        _touch(metric)

    server = serve_metrics(registry, "127.0.0.1", _free_port())
    assert server is not None
    try:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert response.status == 200
            page = response.read().decode()
    finally:
        server.close()

    families = {f.name: f for f in text_string_to_metric_families(page)}
    assert "process_cpu_seconds" in families  # the process collector is on the same registry
    for attr, metric in defined.items():
        name = metric._name
        assert name in families, f"Metrics.{attr} ({name}) is not on /metrics"
        assert NAME.match(name), name
        family = families[name]
        if family.type == "counter":
            assert any(s.name == f"{name}_total" for s in family.samples), attr
            # a counter's own unit, if any, comes before _total: fashionstream_x_bytes_total
        else:
            assert name.rsplit("_", 1)[-1] in UNITS, f"{name}: no base unit suffix"
        label_names = set(metric._labelnames)
        assert not label_names & UNBOUNDED_LABELS, f"{name} has an unbounded label"


@pytest.mark.parametrize(
    ("histogram", "labels", "apart"),
    [
        # a JPEG decode and a CPU Mask R-CNN batch are both stage work
        ("stage_duration", {"stage": "infer"}, (0.002, 45.0)),
        # a frame written at once and a catalogue image queued behind a backlog
        ("end_to_end_latency", {"source_kind": "feed"}, (0.3, 500.0)),
        # one record and a full batch
        ("batch_size", {"stage": "sink"}, (1.0, 200.0)),
    ],
)
def test_histogram_buckets_tell_apart_the_extremes_they_measure(
    histogram: str, labels: dict[str, str], apart: tuple[float, float]
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=False)
    metric = getattr(metrics, histogram)
    low, high = apart
    metric.labels(**labels).observe(low)
    metric.labels(**labels).observe(high)
    buckets = {
        float(s.labels["le"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == f"{metric._name}_bucket"
    }
    finite = [count for edge, count in sorted(buckets.items()) if edge != float("inf")]
    # the low value in a finite bucket of its own, the high one below the last finite edge
    assert 1.0 in finite, f"{low} is not resolved: {buckets}"
    assert finite[-1] == 2.0, f"{high} is past the last finite bucket: {buckets}"


@pytest.mark.parametrize(("port", "served"), [(0, False), (-1, None), (70000, None)])
def test_serve_metrics_port_rules(port: int, served: bool | None) -> None:
    registry = CollectorRegistry()
    if served is None:
        with pytest.raises(ValueError, match="metrics port"):
            serve_metrics(registry, "127.0.0.1", port)
    else:
        assert serve_metrics(registry, "127.0.0.1", port) is None


def test_serve_metrics_fails_loudly_on_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            serve_metrics(CollectorRegistry(), "127.0.0.1", taken.getsockname()[1])
