"""`fashionstream worker` and `fashionstream produce images|video`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from fashionstream.app.commands import Commands
from fashionstream.core.settings import Settings

SOURCE_FROM_ENV = "env:"  # produce video env:NAME: the source URL is in $NAME

log = logging.getLogger(__name__)


def register(commands: Commands, produce: Commands) -> None:
    """Adds `worker`, `produce images` and `produce video`."""
    worker = commands.add_parser(
        "worker",
        help="run the stream processors (fetch, tag, sink) until SIGINT/SIGTERM",
        description="Runs the Faust worker: images -> frames -> tagged items -> Postgres. "
        "Serves /metrics on FASHIONSTREAM_WORKER_METRICS_PORT.",
    )
    worker.set_defaults(func=_worker)

    images = produce.add_parser(
        "images",
        help="send a catalogue feed's items to fashion.images.v1",
        description="CSV or JSON Lines (or a plain list of URLs; `-` for stdin) with at least an "
        "id and an image URL. Recognised URL columns: image_link, image_url, imageUrl, image; id "
        "columns: id, item_id, sku, product_id, offer_id. Other columns become item attributes.",
    )
    images.add_argument("feed_file", metavar="FEED", help="feed file, or - for stdin")
    images.add_argument("--feed", help="source id of the feed (default: the file's stem)")
    images.add_argument(
        "--format", choices=["auto", "csv", "jsonl", "urls"], default="auto", dest="feed_format"
    )
    images.add_argument(
        "--base-url", help="resolve relative image links against this URL (e.g. a local server)"
    )
    images.add_argument("--no-progress", action="store_true", help="no progress bar")
    images.set_defaults(func=_produce_images)

    video = produce.add_parser(
        "video",
        help="send a video's sampled frames to fashion.frames.v1",
        description="A file, or an rtsp:// / rtmp:// / http(s):// URL. Frames are sampled by "
        "presentation time, resized to FASHIONSTREAM_VIDEO_MAX_SIDE and JPEG-encoded. Live sources "
        "run until SIGINT/SIGTERM, reconnecting with backoff.",
    )
    video.add_argument(
        "source",
        metavar="SOURCE",
        help="video file or stream URL; env:NAME reads it from the environment variable NAME"
        " (a camera's credentials stay out of the process list)",
    )
    video.add_argument("--camera", required=True, help="camera id (the Kafka key)")
    video.add_argument(
        "--fps",
        type=float,
        help="frames per second of video time (default: FASHIONSTREAM_VIDEO_FPS)",
    )
    video.add_argument("--no-progress", action="store_true", help="no progress bar")
    video.set_defaults(func=_produce_video)


def _worker(settings: Settings, _args: argparse.Namespace) -> int:
    from stream_processors.worker import run_worker

    return run_worker(settings)


def _metrics(settings: Settings) -> tuple[Any, Any]:
    from prometheus_client import CollectorRegistry

    from fashionstream.core.metrics import Metrics, serve_metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    server = serve_metrics(registry, settings.metrics_host, settings.producer_metrics_port)
    return metrics, server


def _produce_images(settings: Settings, args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from producers.feed import FeedFormat
    from producers.image_feed import FeedProducer

    metrics, server = _metrics(settings)
    producer = FeedProducer.from_settings(settings, metrics)
    try:
        report = producer.send_file(
            args.feed_file,
            feed=args.feed,
            fmt=FeedFormat(args.feed_format),
            base_url=args.base_url,
            progress=not args.no_progress,
        )
    except FileNotFoundError as exc:
        print(f"fashionstream produce images: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(
            f"fashionstream produce images: Kafka at {settings.kafka_bootstrap}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        producer.close()
        if server is not None:
            server.close()
    print(report.summary())
    if not report.ok:
        print("fashionstream produce images: nothing could be sent", file=sys.stderr)
        return 1
    return 0


def _produce_video(settings: Settings, args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from producers.video import LiveSourceRefused, VideoProducer

    if args.fps is not None and not 0.0 < args.fps <= 120.0:
        print("fashionstream produce video: --fps must be in (0, 120]", file=sys.stderr)
        return 2
    source = args.source
    if source.startswith(SOURCE_FROM_ENV):
        name = source.removeprefix(SOURCE_FROM_ENV)
        source = os.environ.get(name, "")
        if not source:
            print(f"fashionstream produce video: ${name} is not set", file=sys.stderr)
            return 2
    metrics, server = _metrics(settings)
    producer = VideoProducer.from_settings(settings, metrics, fps=args.fps)
    stop = producer.stop
    previous = _stop_on_signals(stop)
    try:
        report = producer.send(source, args.camera, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fashionstream produce video: {exc}", file=sys.stderr)
        return 2
    except LiveSourceRefused as exc:  # wrong credentials or path: retrying would loop for ever
        print(f"fashionstream produce video: {exc.detail}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(
            f"fashionstream produce video: Kafka at {settings.kafka_bootstrap}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        producer.close()
        if server is not None:
            server.close()
    print(report.summary())
    return 0 if report.ok else 1


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT/SIGTERM end a live session cleanly (flush, summary) instead of a traceback."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current frame", signum)
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous
