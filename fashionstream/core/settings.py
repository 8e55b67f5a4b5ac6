"""The one frozen settings object: every setting, its default, its env var and what it does.

Read once at the entry point (`Settings.from_env()`), then passed down. Nothing else reads the
environment. `fashionstream settings` prints the table below with the values in effect.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "FASHIONSTREAM_"
REPO_ROOT = Path(__file__).resolve().parents[2]


class BrokerKind(enum.StrEnum):
    """Which pip-installed Kafka-protocol broker the embedded stack runs."""

    NOIDA = "noida"
    TANSU = "tansu"


class Backend(enum.StrEnum):
    """How the tagger runs its networks."""

    AUTO = "auto"  # the fastest one available: torch on a GPU, ONNX Runtime on a CPU
    TORCH = "torch"
    ONNX = "onnx"


class Device(enum.StrEnum):
    AUTO = "auto"  # cuda when a GPU is present, else cpu
    CPU = "cpu"
    CUDA = "cuda"


class FallBehindPolicy(enum.StrEnum):
    """What a live video source does when the pipeline cannot keep up. Files never drop."""

    DROP_OLDEST = "drop_oldest"  # keep the newest frames: analytics wants "now", not a backlog
    BLOCK = "block"  # wait for the broker; the camera's own buffer then drops frames


def time_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name (UTC, Europe/Berlin); ValueError saying so for another name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (UTC, Europe/Berlin, ...)") from None


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _secret_setting(default: Any, help: str) -> Any:
    """A setting whose value `describe` (and so `fashionstream settings`) never prints."""
    return field(default=default, metadata={"help": help, "secret": True})


def _setting_factory(factory: Callable[[], Any], help: str) -> Any:
    return field(default_factory=factory, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every setting of every fashionstream process. Env var: FASHIONSTREAM_<NAME upper-case>."""

    # --- local state and logging
    state_dir: Path = _setting_factory(
        lambda: Path.home() / ".local" / "state" / "fashionstream",
        "where the embedded stack keeps its broker and Postgres data, logs and pid files",
    )
    log_level: str = _setting("INFO", "Python logging level for every process")

    # --- Kafka
    kafka_bootstrap: str = _setting(
        "127.0.0.1:19092", "Kafka bootstrap servers, comma-separated (host:port)"
    )
    embedded_broker: BrokerKind = _setting(
        BrokerKind.TANSU, "broker that `fashionstream up` starts when Kafka is local"
    )
    topic_partitions: int = _setting(4, "partitions per topic when the topics are created")
    topic_replication: int = _setting(1, "replication factor when the topics are created")
    max_message_bytes: int = _setting(
        8 * 1024 * 1024, "largest Kafka message produced or accepted (frames are JPEG bytes)"
    )
    kafka_session_timeout_s: float = _setting(
        6.0, "consumer group session timeout; short so a restarted worker rejoins fast"
    )
    consumer_group: str = _setting("fashionstream", "Faust app id = Kafka consumer group")
    shutdown_timeout_s: float = _setting(
        15.0,
        "SIGTERM/SIGINT: longest time a worker takes to stop; what is not durable by then is"
        " left uncommitted and read again by the next worker",
    )

    # --- Postgres
    database_url: str = _setting(
        "postgresql://postgres@127.0.0.1:15432/fashionstream",
        "Postgres the sink writes to (libpq URL)",
    )

    # --- fetching catalogue images (SSRF-guarded)
    fetch_allow_networks: tuple[str, ...] = _setting(
        (),
        "CIDRs that may be fetched although private/loopback/link-local (comma-separated);"
        " empty refuses them all",
    )
    fetch_connect_timeout_s: float = _setting(5.0, "TCP connect timeout per fetch")
    fetch_read_timeout_s: float = _setting(15.0, "timeout between bytes while reading a body")
    fetch_total_timeout_s: float = _setting(
        60.0, "longest time one fetch may take, redirects included (a slow-drip guard)"
    )
    fetch_max_bytes: int = _setting(
        20 * 1024 * 1024, "largest image body; enforced while streaming"
    )
    fetch_max_pixels: int = _setting(
        40_000_000, "largest decoded image (width x height): a decompression-bomb guard"
    )
    fetch_max_redirects: int = _setting(5, "redirects followed per fetch, each re-checked")
    fetch_concurrency: int = _setting(8, "catalogue images fetched at once per worker")
    image_max_side: int = _setting(
        1024, "fetched images are resized so the long side is at most this before tagging"
    )

    # --- video sources
    video_fps: float = _setting(2.0, "frames sampled per second of presentation time")
    video_max_side: int = _setting(640, "frames are resized so the long side is at most this")
    jpeg_quality: int = _setting(85, "JPEG quality of frames on the wire")
    fall_behind_policy: FallBehindPolicy = _setting(
        FallBehindPolicy.DROP_OLDEST, "live sources only: drop_oldest or block"
    )
    reconnect_backoff_max_s: float = _setting(30.0, "longest wait between live-source reconnects")
    live_max_age_s: float = _setting(
        2.0,
        "live camera frames older than this (capture time to the moment inference could start)"
        " are skipped, not tagged, so that a worker that cannot keep up tags the newest frames"
        " instead of falling further behind; 0 = never skip; recordings are never skipped",
    )

    live_newest_only: bool = _setting(
        True,
        "a live frame is skipped when a newer frame of its camera has reached the worker (it is"
        " behind that camera: it tags the newest); false: only live_max_age_s skips",
    )
    live_batch_size: int = _setting(
        1,
        "a batch holding live camera frames is inferred in chunks of this many frames, each"
        " published when tagged: a live frame waits for its chunk, not the whole batch",
    )

    # --- tagging
    weights_dir: Path = _setting(REPO_ROOT / "weights", "folder with manifest.json and the weights")
    backend: Backend = _setting(
        Backend.AUTO,
        "auto, torch or onnx; auto = onnx (the graphs shipped in weights/), torch where torch"
        " is installed and sees a GPU",
    )
    device: Device = _setting(
        Device.AUTO, "auto, cpu or cuda; auto = a GPU the backend can use (onnx: onnxruntime-gpu)"
    )
    torch_threads: int = _setting(0, "CPU threads for inference; 0 = all cores")
    tagger_process: bool = _setting(
        True,
        "the worker runs its tagger in a child process with a GIL of its own, so that the"
        " worker's own Python (records, sink, tracking) does not stall inference; false: in"
        " the worker's inference thread",
    )
    # Off by default: with 10, bench pipeline on 2 cores gained 3.5% frames/s, but the
    # worker's main thread also runs the Kafka group protocol, and one run of
    # tests/integration/test_scale_out.py (three workers and live producers on 2 cores) ended
    # with a worker rejoining its group every 8 s until the test gave up (alone, with it on, the
    # test passed): not yet understood. Lowering only the helper threads (decode, sink,
    # tracking) and not the event loop was tried (2026-12-07): in 5 alternating bench pipeline
    # runs each, pipeline frames/s had the same median (about 5.8) with 0 and 10, so not kept
    worker_nice: int = _setting(
        0,
        "how much lower than its inference the worker's other threads run (Linux nice steps,"
        " 0-19): records, sink and tracking then take the cores inference leaves, not half of"
        " them; 0 = equal. Only where the worker has its cores to itself",
    )
    batch_size: int = _setting(8, "frames per inference batch (Faust take(N, ...))")
    # 0.5 s each made a live frame's row wait ~0.75 s after it was tagged (bench live, one
    # camera: capture-to-row p50 1.70 s -> 1.13 s at 0.2 / 0.1); a busy stream fills its batches
    # long before either timer, so only a trickle of records pays for them
    batch_within_s: float = _setting(0.2, "longest wait to fill a batch (Faust take(..., within))")
    detection_threshold: float = _setting(0.5, "lowest detection score kept")
    person_threshold: float = _setting(
        0.35, "lowest person-detector score kept (chosen on held-out frames: weights/people.md)"
    )
    person_input_sizes: tuple[int, ...] = _setting(
        (),
        "an imported person detector's inputs: squares in pixels each frame is fitted into, one"
        " run each, boxes merged (empty = its spec's input.sizes, else its size; larger finds"
        " smaller people, each size costs a run: weights/people.md)",
    )
    plugins: tuple[Path, ...] = _setting(
        (),
        "your own ONNX models, as model spec files, comma-separated (weights/README.md: a"
        " classifier adds or replaces an attribute head, a person detector replaces ours)",
    )
    garments_per_person: bool = _setting(
        True,
        "find garments on each detected person's crop; false: the garment detector on the"
        " whole frame (the single-stage path)",
    )
    garments_per_track: bool = _setting(
        True,
        "camera frames: a tracked person's garments are inferred on chosen crops (first seen,"
        " then a clearly better crop) and carried to their other frames; false: every person"
        " in every frame (per-frame masks, e.g. for annotated video)",
    )
    garment_refresh_s: float = _setting(
        2.0, "a tracked person's garments are inferred again at most this often (capture time)"
    )

    # --- sink
    sink_batch_size: int = _setting(64, "tagged images written per Postgres transaction")
    sink_batch_within_s: float = _setting(
        0.1, "longest wait to fill a sink (and tracking) batch: see batch_within_s"
    )
    sink_retry_max_s: float = _setting(
        30.0, "longest backoff between retries while Postgres is down"
    )

    # --- tracking (people across a camera's frames -> sightings)
    track_end_after_s: float = _setting(
        3.0, "a tracked person unseen this many seconds of capture time ends their sighting"
    )
    track_max_duration_s: float = _setting(
        300.0, "a track this long (capture seconds) is emitted as a sighting and goes on anew"
    )
    track_min_frames: int = _setting(
        2, "frames a track needs to become a sighting (fewer: a spurious detection)"
    )
    track_person_min_score: float = _setting(
        0.35,
        "a person detection below this score keeps a track alive but neither starts nor extends"
        " a sighting",
    )
    track_idle_flush_s: float = _setting(
        60.0,
        "wall-clock seconds without a frame from a camera after which its open tracks are emitted"
        " (a source that stopped without marking its end)",
    )

    # --- metrics
    metrics_host: str = _setting("127.0.0.1", "address /metrics listens on (0.0.0.0 to expose)")
    worker_metrics_port: int = _setting(9464, "port of the worker's /metrics; 0 = none")
    producer_metrics_port: int = _setting(9465, "port of a producer's /metrics; 0 = none")

    # --- HTTP API (`fashionstream api`)
    api_host: str = _setting("127.0.0.1", "address the HTTP API listens on (0.0.0.0 to expose)")
    api_port: int = _setting(8080, "port of the HTTP API")
    api_keys: tuple[str, ...] = _secret_setting(
        (),
        "API keys, comma-separated; when set, every API call but /healthz needs one"
        " (header X-API-Key or Authorization: Bearer); empty: no key is asked for",
    )
    api_max_body_bytes: int = _setting(
        1024 * 1024,
        "largest JSON request body the API reads (uploads to /v1/images:tag: fetch_max_bytes)",
    )
    api_wait_max_s: float = _setting(
        30.0, "longest ?wait= of POST /v1/images; longer waits are cut to this"
    )

    # --- the popular-items report (`fashionstream report`, GET /v1/report)
    report_timezone: str = _setting(
        "UTC",
        "IANA time zone of the report's days and times (e.g. Europe/Berlin): where a day begins"
        " for its per-day charts, and what a date without a zone (--since 2026-11-01) means",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from FASHIONSTREAM_* variables (then `overrides`), with clear errors."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                try:
                    values[f.name] = _parse(hints[f.name], raw)
                except ValueError as exc:
                    raise ValueError(f"{env_name(f.name)}={raw!r}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        positive = (
            "topic_partitions", "max_message_bytes", "fetch_max_bytes", "fetch_max_pixels",
            "image_max_side", "video_max_side", "batch_size", "live_batch_size", "sink_batch_size",
            "fetch_total_timeout_s", "shutdown_timeout_s", "api_max_body_bytes",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.api_port < 65536:
            raise ValueError(f"api_port must be in 1..65535, got {self.api_port}")
        if not 0 <= self.worker_nice <= 19:
            raise ValueError(f"worker_nice must be in 0..19, got {self.worker_nice}")
        if self.live_max_age_s < 0:
            raise ValueError(f"live_max_age_s must be >= 0, got {self.live_max_age_s}")
        if self.garment_refresh_s < 0:
            raise ValueError(f"garment_refresh_s must be >= 0, got {self.garment_refresh_s}")
        if any(size < 64 or size % 32 for size in self.person_input_sizes):
            raise ValueError(
                f"person_input_sizes must be multiples of 32 from 64, got {self.person_input_sizes}"
            )
        if self.api_wait_max_s < 0:
            raise ValueError(f"api_wait_max_s must be >= 0, got {self.api_wait_max_s}")
        if not 0.0 < self.video_fps <= 120.0:
            raise ValueError(f"video_fps must be in (0, 120], got {self.video_fps}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not self.track_end_after_s > 0.0:
            raise ValueError(f"track_end_after_s must be > 0, got {self.track_end_after_s}")
        if not self.track_max_duration_s > self.track_end_after_s:
            raise ValueError(
                f"track_max_duration_s ({self.track_max_duration_s}) must be longer than"
                f" track_end_after_s ({self.track_end_after_s})"
            )
        if self.track_min_frames < 1:
            raise ValueError(f"track_min_frames must be >= 1, got {self.track_min_frames}")
        if not 0.0 <= self.track_person_min_score <= 1.0:
            raise ValueError(
                f"track_person_min_score must be in [0, 1], got {self.track_person_min_score}"
            )
        if not self.track_idle_flush_s > 0.0:
            raise ValueError(f"track_idle_flush_s must be > 0, got {self.track_idle_flush_s}")
        if not 0.0 <= self.detection_threshold <= 1.0:
            raise ValueError(
                f"detection_threshold must be in [0, 1], got {self.detection_threshold}"
            )
        if not 0.0 <= self.person_threshold <= 1.0:
            raise ValueError(f"person_threshold must be in [0, 1], got {self.person_threshold}")
        time_zone(self.report_timezone)

    def describe(self, *, redacted: bool = False) -> list[tuple[str, str, str]]:
        """(env var, value in effect, description) for every setting, in declaration order.
        `redacted`: secrets (API keys) show only how many are set, for printing; without it the
        values are exact, as handing settings to a child process needs."""
        return [
            (
                env_name(f.name),
                _show(getattr(self, f.name), f.metadata if redacted else {}),
                f.metadata["help"],
            )
            for f in dataclasses.fields(self)
        ]


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _show(value: Any, metadata: Mapping[str, Any]) -> str:
    if metadata.get("secret"):
        count = len(value) if isinstance(value, tuple) else int(bool(value))
        return f"({count} set, not shown)" if count else ""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _parse(hint: Any, raw: str) -> Any:
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected a boolean (true/false)")
    if hint in (int, float, str):
        return hint(raw.strip() if hint is not str else raw)
    if hint is Path:
        return Path(raw).expanduser()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(raw.strip().lower())
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise ValueError(f"expected one of: {allowed}") from None
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_parse(item, part.strip()) for part in raw.split(",") if part.strip())
    if origin is types.UnionType:  # pragma: no cover - no optional settings yet
        raise ValueError("optional settings are not supported")
    raise TypeError(f"no parser for settings type {hint!r}")
