"""The Faust app and its wiring: topics, the fetch / tagging / sink agents, consumer-lag sampling.

`faust_app(settings)` configures Faust for this pipeline (the broker, the consumer group, session
and heartbeat, message sizes, no web server, no topic creation, no leader topic, no tables).
`Pipeline` registers the agents on it with their dependencies injected: any `models.tags.Tagger`
(or a factory for one, called in the inference thread), any sink with add()/flush(), and the
metrics. `Pipeline.from_settings` builds the real ones. See `acks.py` for when offsets commit.
Given a sightings store, a tracking agent also reads `fashion.items.v1` (see `tracking.py`);
a record there is committed once both the sink and the tracking agent released it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeGuard, cast

import faust
from mode import CrashingSupervisor

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import Topic
from fashionstream.core.settings import Settings
from models.tags import Tagger
from stream_processors.acks import Holds
from stream_processors.deadletters import DeadLetterer
from stream_processors.faust_transport import Transport as FetchTransport
from stream_processors.fetch import FetchOptions, ImageFetcher
from stream_processors.fetching import FetchStage
from stream_processors.sending import Send, checked, faust_sender
from stream_processors.sinking import ItemSink, SinkStage
from stream_processors.ssrf import AddressPolicy
from stream_processors.tagger_process import TaggerProcess
from stream_processors.tagging import TaggingStage
from stream_processors.tracking import IDLE_CHECK_S, SightingStore, TrackingStage

log = logging.getLogger(__name__)

# Kafka framing around a value: key, headers, record and batch headers.
RECORD_OVERHEAD_BYTES = 64 * 1024
COMMIT_INTERVAL_S = 1.0  # short: a restarted worker re-reads (and re-writes, idempotently) little
LAG_SAMPLE_S = 5.0

TaggerFactory = Callable[[], Tagger]
SinkFactory = Callable[[], ItemSink]
SightingStoreFactory = Callable[[], SightingStore]


def faust_app(settings: Settings, *, app_id: str | None = None) -> faust.App:
    """A Faust app configured for the pipeline; agents are added by `Pipeline`."""
    session_s = settings.kafka_session_timeout_s
    max_record = settings.max_message_bytes + RECORD_OVERHEAD_BYTES
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")]
    app = faust.App(
        app_id or settings.consumer_group,
        broker=brokers,
        autodiscover=False,
        datadir=str(settings.state_dir / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        # Topics are created by infra (the embedded stack) or exist in production: Faust must
        # neither create them with its own partition counts nor create its leader topic.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        store="memory://",
        processing_guarantee="at_least_once",
        stream_publish_on_commit=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(0.5, session_s / 3),
        broker_request_timeout=max(90.0, session_s * 2),
        broker_commit_interval=COMMIT_INTERVAL_S,
        producer_acks=-1,  # a produced result counts only once every in-sync replica has it
        producer_linger_ms=5,
        producer_max_request_size=max_record,
        consumer_max_fetch_size=max_record,
        # Events buffered per agent beyond the batch being processed: enough to fill the next
        # batch while one is inferred, few enough that frames (up to MBs each) stay bounded.
        stream_buffer_maxsize=max(64, 4 * settings.batch_size, 2 * settings.sink_batch_size),
    )
    # the consumer's fetches wait 250 ms, not Faust's fixed 1.5 s (see faust_transport.py)
    app.transport = FetchTransport(app.conf.broker_consumer, app)
    return app


class Pipeline:
    """The Faust app with the fetch, tagging and sink agents registered on it."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: faust.App,
        tagger: Tagger | TaggerFactory,
        sink: ItemSink | SinkFactory,
        metrics: Metrics,
        fetcher_factory: Callable[[], ImageFetcher] | None = None,
        send: Send | None = None,
        sightings: SightingStore | SightingStoreFactory | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.metrics = metrics
        self._tagger_source = tagger
        self._tagger_future: asyncio.Future[Tagger] | None = None
        self._crashing: asyncio.Future[None] | None = None
        # One thread each: inference (torch must not multiply its own thread pool), frame
        # decoding (overlaps inference), catalogue image preparation, and psycopg2.
        self.infer_executor = ThreadPoolExecutor(1, thread_name_prefix="fs-infer")
        self.decode_executor = ThreadPoolExecutor(1, thread_name_prefix="fs-decode")
        self.image_executor = ThreadPoolExecutor(1, thread_name_prefix="fs-image")
        self.sink_executor = ThreadPoolExecutor(1, thread_name_prefix="fs-sink")
        # trackers and their Postgres writes: one thread, so a camera's state has one writer
        self.track_executor = ThreadPoolExecutor(1, thread_name_prefix="fs-track")

        def topic(name: Topic) -> Any:
            return app.topic(
                name.value,
                key_serializer="raw",
                value_serializer="raw",
                allow_empty=True,  # an empty value is a bad record to dead-letter, not a skip
            )

        self.images_topic = topic(Topic.IMAGES)
        self.frames_topic = topic(Topic.FRAMES)
        self.items_topic = topic(Topic.ITEMS)
        self.deadletter_topic = topic(Topic.DEADLETTER)
        if fetcher_factory is None:
            policy = AddressPolicy.from_cidrs(settings.fetch_allow_networks)  # fails fast
            options = FetchOptions.from_settings(settings)

            def fetcher_factory() -> ImageFetcher:
                return ImageFetcher.open(policy, options)  # inside the loop: aiohttp needs it

        send = send or faust_sender(
            {
                Topic.FRAMES: self.frames_topic,
                Topic.ITEMS: self.items_topic,
                Topic.DEADLETTER: self.deadletter_topic,
            }
        )
        # no record over max_message_bytes reaches the producer: it is its input's dead letter
        send = checked(send, settings.max_message_bytes)
        dead_letters = DeadLetterer(send, metrics)

        def consumer() -> Any:
            return app.consumer

        # every agent's held batches, withdrawn at once when the worker stops (acks.py)
        self.holds = Holds(consumer)

        self.fetch = FetchStage(
            settings,
            fetcher_factory=fetcher_factory,
            send=send,
            dead_letters=dead_letters,
            metrics=metrics,
            image_executor=self.image_executor,
            consumer=consumer,
            holds=self.holds,
            on_failure=self._crash,
        )
        self.tagging = TaggingStage(
            settings,
            tagger=self.tagger,
            send=send,
            dead_letters=dead_letters,
            metrics=metrics,
            decode_executor=self.decode_executor,
            infer_executor=self.infer_executor,
            consumer=consumer,
            holds=self.holds,
            on_failure=self._crash,
        )
        self.sink = SinkStage(
            settings,
            sink=_sink_factory(sink),
            dead_letters=dead_letters,
            metrics=metrics,
            sink_executor=self.sink_executor,
            consumer=consumer,
            holds=self.holds,
        )

        def agent(channel: Any, name: str, body: Callable[[Any], Awaitable[None]]) -> Any:
            return app.agent(
                channel,
                name=f"fashionstream.{name}",
                concurrency=1,  # acks in offset order: see acks.py
                supervisor_strategy=CrashingSupervisor,
            )(body)

        self.fetch_agent = agent(self.images_topic, "fetch", self.fetch.run)
        self.tag_agent = agent(self.frames_topic, "tag", self.tagging.run)
        self.sink_agent = agent(self.items_topic, "sink", self.sink.run)
        self.tracking: TrackingStage | None = None
        if sightings is not None:
            from models.tracking import TrackingConfig

            self.tracking = TrackingStage(
                settings,
                store=_store_factory(sightings),
                config=TrackingConfig.from_settings(settings),
                metrics=metrics,
                executor=self.track_executor,
                consumer=consumer,
                holds=self.holds,
            )
            self.track_agent = agent(self.items_topic, "track", self.tracking.run)
            app.timer(IDLE_CHECK_S)(self.tracking.close_idle)
        app.task(self._load_tagger)
        app.timer(LAG_SAMPLE_S)(self._sample_lag)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        metrics: Metrics,
        tagger: Tagger | TaggerFactory | None = None,
        sink: ItemSink | SinkFactory | None = None,
        sightings: SightingStore | SightingStoreFactory | None = None,
        app: faust.App | None = None,
    ) -> Pipeline:
        """The production wiring: `models.tagger.FashionTagger` from the shipped weights,
        `sinks.postgres.PostgresSink` and `sinks.sightings.SightingSink`, unless others are
        injected."""
        if tagger is None:

            def load_tagger() -> Tagger:
                build = functools.partial(fashion_tagger, settings)
                if settings.tagger_process:
                    return TaggerProcess(build, log_level=settings.log_level)
                return build()

            tagger = load_tagger
        if sink is None:

            def connect_sink() -> ItemSink:
                from sinks.postgres import PostgresSink

                return PostgresSink.from_settings(settings, metrics)

            sink = connect_sink
        if sightings is None:

            def connect_sightings() -> SightingStore:
                from sinks.sightings import SightingSink

                return SightingSink.from_settings(settings, metrics)

            sightings = connect_sightings
        return cls(
            settings,
            app=app or faust_app(settings),
            tagger=tagger,
            sink=sink,
            metrics=metrics,
            sightings=sightings,
        )

    def begin_shutdown(self) -> int:
        """The worker was asked to stop: nothing more is committed, and what is held (not yet
        durable) no longer keeps Faust's stop waiting; it is read again by the next worker.
        Returns the records left for redelivery."""
        # nothing is acked after this (acks.py): Faust's wait for the messages in flight to be
        # acked could only end at the shutdown bound, so it just commits what was acked
        self.app.conf.stream_wait_empty = False
        return self.holds.stop()

    def put_inference_first(self) -> None:
        """Lower this thread (the worker's main thread, before Faust starts) and every thread
        it starts from now on `settings.worker_nice` steps below the inference thread; see
        `lower_all_but`."""
        lower_all_but(self.infer_executor, self.settings.worker_nice)

    def close(self) -> None:
        for executor in (
            self.infer_executor,
            self.decode_executor,
            self.image_executor,
            self.sink_executor,
            self.track_executor,
        ):
            executor.shutdown(wait=False, cancel_futures=True)
        built = self._tagger_future
        if built is not None and built.done() and not built.cancelled() and not built.exception():
            close = getattr(built.result(), "close", None)
            if callable(close):  # a TaggerProcess: its child finishes the batch in flight
                close()

    async def tagger(self) -> Tagger:
        """The tagger, built once in the inference thread (where it will run)."""
        if self._tagger_future is None:
            loop = asyncio.get_running_loop()
            source = self._tagger_source
            if _is_tagger(source):
                future: asyncio.Future[Tagger] = loop.create_future()
                future.set_result(source)
            else:
                factory = cast(TaggerFactory, source)
                future = asyncio.ensure_future(loop.run_in_executor(self.infer_executor, factory))
            self._tagger_future = future
        return await self._tagger_future

    def _crash(self, exc: BaseException) -> None:
        """Stop the worker (exit status 1): what CrashingSupervisor does for an agent."""
        if not self.app.crashed and self._crashing is None:
            self._crashing = asyncio.ensure_future(self.app.crash(exc))

    async def _load_tagger(self) -> None:
        """Loads the model when the worker starts, not on the first batch."""
        try:
            tagger = await self.tagger()
        except Exception as exc:
            log.exception("cannot build the tagger")
            await self.app.crash(exc)
            return
        log.info("tagger ready: model %s", tagger.model_version)

    async def _sample_lag(self) -> None:
        """Consumer lag per assigned partition: end offset - committed offset (the position
        when this worker has committed nothing on it yet). The committed offsets are what
        Faust's Monitor sensor records on every commit (`Monitor.on_tp_commit` ->
        `tp_committed_offsets`): what a restarted worker would resume from. A failed sample is
        skipped: a metric must not take the worker down."""
        consumer = self.app.consumer
        assigned = consumer.assignment()
        if not assigned:
            return
        try:
            ends = await consumer.highwaters(*assigned)
        except Exception as exc:
            log.debug("lag sample failed: %r", exc)
            return
        committed: Mapping[Any, int] = self.app.monitor.tp_committed_offsets or {}
        for tp, end in ends.items():
            try:
                done = committed.get(tp)
                if done is None:
                    done = await consumer.position(tp)
            except Exception as exc:
                log.debug("lag sample for %s failed: %r", tp, exc)
                continue
            if done is None or end is None:
                continue
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))


def fashion_tagger(settings: Settings) -> Tagger:
    """The shipped models' tagger (module level: a TaggerProcess's child builds it)."""
    from models.tagger import FashionTagger  # the models are loaded where they will run

    return FashionTagger.from_settings(settings)


def lower_all_but(executor: ThreadPoolExecutor, nice: int) -> None:
    """Lower the calling thread's CPU priority by `nice` steps after making sure `executor`'s
    (single) thread exists, so that thread, and every process it starts, keeps the priority
    the calling thread had; threads the calling thread starts later inherit the lower one.

    Why: on two cores the tagger's process and the worker's own Python (records, sink,
    tracking) were given equal shares, so inference ran at about 0.8 of its speed alone while
    a core sat partly idle whenever the tagger ran single-threaded Python. With the worker
    lower, the scheduler gives inference the cores first and the worker what is left, which
    its work fits into. Linux keeps a nice value per thread; where it is per process (macOS)
    the whole worker and its tagger go lower together, as equal as before.
    """
    if nice <= 0:
        return
    executor.submit(int).result()  # starts the executor's thread at today's priority
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except OSError as exc:
        log.warning("could not lower the worker's priority by %d: %s", nice, exc)


def _is_tagger(source: Tagger | TaggerFactory) -> TypeGuard[Tagger]:
    return hasattr(source, "tag")


def _store_factory(store: SightingStore | SightingStoreFactory) -> SightingStoreFactory:
    if hasattr(store, "flush"):
        built = cast(SightingStore, store)
        return lambda: built
    return store  # not a store, so the factory


def _sink_factory(sink: ItemSink | SinkFactory) -> SinkFactory:
    if hasattr(sink, "flush"):
        built = cast(ItemSink, sink)
        return lambda: built
    return sink  # not an ItemSink, so the factory
