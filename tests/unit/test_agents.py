"""The Faust agents in-process (`agent.test_context()`), with a fake tagger, fetcher and sink,
and a recording `Send` whose broker acknowledgements the tests control."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from fashionstream.core.errors import DeadLetterReason, FetchError
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import (
    Frame,
    ImageRequest,
    SourceKind,
    TaggedImage,
    Topic,
    event_id_for_frame,
)
from fashionstream.core.settings import Settings
from models.tags import FrameSource
from stream_processors.app import Pipeline, faust_app
from stream_processors.faust_transport import FETCH_MAX_WAIT_MS
from stream_processors.fetch import FetchedImage
from stream_processors.ssrf import AddressPolicy, validate_url
from tests.support.agents import FakeSink, Recorder, put, run, until
from tests.support.fake_tagger import FakeTagger


def jpeg(colour: tuple[int, int, int] = (10, 200, 10), size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


class FakeFetcher:
    """Serves `bodies` by URL after the real URL validation; other URLs are 404s."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.policy = AddressPolicy()
        self.closed = False

    async def fetch(self, url: str) -> FetchedImage:
        validate_url(url, self.policy)
        if url not in self.bodies:
            raise FetchError(DeadLetterReason.HTTP_STATUS, f"HTTP 404 from {url}")
        await asyncio.sleep(0.01)
        return FetchedImage(url, self.bodies[url], "image/jpeg", 0, 0.01)

    async def close(self) -> None:
        self.closed = True


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        state_dir=tmp_path,
        batch_size=4,
        batch_within_s=0.05,
        sink_batch_size=4,
        sink_batch_within_s=0.05,
        fetch_concurrency=4,
    )


def pipeline(
    tmp_path: Path,
    send: Recorder,
    *,
    tagger: FakeTagger | None = None,
    sink: FakeSink | None = None,
    bodies: dict[str, bytes] | None = None,
) -> Pipeline:
    conf = settings(tmp_path)
    return Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=tagger or FakeTagger(),
        sink=sink or FakeSink(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        fetcher_factory=lambda: FakeFetcher(bodies or {}),  # type: ignore[arg-type,return-value]
        send=send,
    )


def frame(n: int, camera: str = "cam-1", image: bytes | None = None) -> Frame:
    return Frame(
        event_id=event_id_for_frame(camera, "clip.mp4:1", n),
        source_kind=SourceKind.CAMERA,
        source_id=camera,
        captured_at=1_800_000_000.0 + n,
        submitted_at=1_800_000_000.5 + n,
        jpeg=image or jpeg(),
        frame_number=n,
    )


# ---------------------------------------------------------------------------------------------
# tagging agent


def test_tagging_agent_tags_frames_off_the_event_loop(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger()
    p = pipeline(tmp_path, send, tagger=tagger)

    async def go() -> None:
        loop_thread = threading.current_thread().name
        async with p.tag_agent.test_context() as agent:
            messages = [
                await put(agent, b"cam-1", f.jpeg, f.headers()) for f in map(frame, range(6))
            ]
            await until(lambda: len(send.on(Topic.ITEMS)) == 6, "6 tagged images")
            await until(lambda: all(m.acked for m in messages), "acks")
        assert tagger.threads
        assert all(name.startswith("fs-infer") for name in tagger.threads)
        assert loop_thread not in tagger.threads
        assert max(tagger.batches) <= 4  # batch_size

    run(go())
    items = [TaggedImage.from_json(v) for _k, v, _h in send.on(Topic.ITEMS)]
    assert [t.frame_number for t in items] == list(range(6))  # batch order kept
    assert {k for k, _v, _h in send.on(Topic.ITEMS)} == {b"cam-1"}
    first = items[0]
    assert first.event_id == frame(0).event_id
    assert (first.width, first.height, first.model_version) == (64, 48, "fake-tagger-1")
    assert len(first.garments) == 1
    assert {"decode", "infer", "queue"} <= set(first.timings)
    assert send.dead_letters() == []
    # each person's crop is cut while the pixels are here; a camera frame has no whole picture
    person = first.people[0]
    assert person.thumbnail is not None
    assert person.thumbnail.startswith(b"\xff\xd8\xff")
    assert first.thumbnail is None


def test_the_tagger_is_told_which_frames_are_catalogue_photos(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger()
    p = pipeline(tmp_path, send, tagger=tagger)
    product = dataclasses.replace(
        frame(1), source_kind=SourceKind.FEED, source_id="shop", frame_number=None,
        item_id="sku-1", image_url="https://shop.example/1.jpg",
    )  # fmt: skip

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            for f in (frame(0), product):
                await put(agent, f.key.encode(), f.jpeg, f.headers())
            await until(lambda: len(send.on(Topic.ITEMS)) == 2, "2 tagged images")

    run(go())
    told = [flag for flags in tagger.catalogue for flag in flags or []]
    assert told == [False, True]
    # a camera frame comes with its camera and capture time (the tagger follows its people
    # between frames); a catalogue photo with none
    sources = [source for batch in tagger.sources for source in batch or []]
    assert sources == [FrameSource("cam-1", frame(0).captured_at), None]


def test_garbage_and_undecodable_frames_are_dead_lettered_and_the_rest_tagged(
    tmp_path: Path,
) -> None:
    send = Recorder()
    p = pipeline(tmp_path, send)
    truncated = frame(2, image=jpeg(size=(640, 480))[:700])

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            await put(agent, b"cam-1", frame(0).jpeg, frame(0).headers())
            await put(agent, b"junk", b"\x00 not a frame", [("ce_type", b"something.else")])
            await put(agent, b"cam-1", truncated.jpeg, truncated.headers())
            await put(agent, None, None)  # an empty record
            await put(agent, b"cam-1", frame(4).jpeg, frame(4).headers())
            await until(lambda: len(send.sent) == 5, "5 records out")

    run(go())
    assert [TaggedImage.from_json(v).frame_number for _k, v, _h in send.on(Topic.ITEMS)] == [0, 4]
    letters = {d.origin.offset: d for d in send.dead_letters() if d.origin}
    assert {o: d.reason for o, d in letters.items()} == {
        1: DeadLetterReason.BAD_RECORD,
        2: DeadLetterReason.TRUNCATED_IMAGE,
        3: DeadLetterReason.BAD_RECORD,
    }
    assert letters[1].origin is not None
    assert (letters[1].origin.topic, letters[1].origin.partition) == (Topic.FRAMES.value, 0)
    assert (letters[1].stage, letters[1].key) == ("tag", "junk")
    assert (letters[2].stage, letters[2].reference) == ("decode", "cam-1#2")


def test_one_poisoned_image_does_not_sink_its_batch(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger(fail_when=lambda image: float(image.mean()) < 20)
    p = pipeline(tmp_path, send, tagger=tagger)
    frames = [frame(0), frame(1, image=jpeg((0, 0, 0))), frame(2)]

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            for f in frames:
                await put(agent, b"cam-1", f.jpeg, f.headers())
            await until(lambda: len(send.sent) == 3, "3 records out")

    run(go())
    assert [TaggedImage.from_json(v).frame_number for _k, v, _h in send.on(Topic.ITEMS)] == [0, 2]
    (letter,) = send.dead_letters()
    assert (letter.reason, letter.stage, letter.reference) == (
        DeadLetterReason.MODEL_ERROR,
        "infer",
        "cam-1#1",
    )


def test_offsets_are_released_only_after_the_broker_acknowledged_the_results(
    tmp_path: Path,
) -> None:
    send = Recorder(auto_ack=False)
    p = pipeline(tmp_path, send)

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            messages = [
                await put(agent, b"cam-1", f.jpeg, f.headers()) for f in map(frame, range(3))
            ]
            await until(lambda: len(send.sent) == 3, "results produced")
            await asyncio.sleep(0.3)  # long past take()'s own ack of the batch
            assert not any(m.acked for m in messages)
            assert [m.refcount for m in messages] == [1, 1, 1]  # held by HeldBatch
            send.ack_all()
            await until(lambda: all(m.acked for m in messages), "acks after delivery")

    run(go())


def test_a_failed_delivery_never_releases_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    send = Recorder(auto_ack=False)
    p = pipeline(tmp_path, send)

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            messages = [
                await put(agent, b"cam-1", f.jpeg, f.headers()) for f in map(frame, range(2))
            ]
            await until(lambda: len(send.sent) == 2, "results produced")
            send.fail_all(RuntimeError("broker gone"))
            await until(lambda: p.app.crashed, "the worker to crash")
            await asyncio.sleep(0.2)
            # the crash (the worker exits, status 1) leaves the offsets uncommitted
            assert not any(m.acked for m in messages)

    run(go())
    assert "broker gone" in caplog.text


# ---------------------------------------------------------------------------------------------
# fetch agent

URL = "https://shop.example/img/sku-1.jpg"


def request(item_id: str, url: str) -> bytes:
    return ImageRequest(
        feed="spring",
        item_id=item_id,
        image_url=url,
        submitted_at=1_800_000_000.0,
        attributes={"title": f"item {item_id}", "price": 10},
    ).to_json()


def test_fetch_agent_turns_requests_into_frames_and_dead_letters_the_rest(tmp_path: Path) -> None:
    send = Recorder()
    big = jpeg(size=(2048, 1024))
    p = pipeline(tmp_path, send, bodies={URL: big, "https://shop.example/page.html": b"<html>"})

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            await put(agent, b"sku-1", request("sku-1", URL))
            await put(agent, b"sku-2", request("sku-2", "ftp://shop.example/2.jpg"))
            await put(agent, b"sku-3", request("sku-3", "http://169.254.169.254/latest/"))
            await put(agent, b"sku-4", request("sku-4", "https://shop.example/missing.jpg"))
            await put(agent, b"sku-5", request("sku-5", "https://shop.example/page.html"))
            await put(agent, b"junk", b"{not json")
            await until(lambda: len(send.sent) == 6, "6 records out")

    run(go())
    ((key, value, headers),) = send.on(Topic.FRAMES)
    out = Frame.from_kafka(value, headers)
    assert key == b"sku-1"
    assert (out.source_kind, out.source_id, out.item_id, out.image_url) == (
        SourceKind.FEED,
        "spring",
        "sku-1",
        URL,
    )
    assert out.submitted_at == 1_800_000_000.0
    assert out.fetch_s is not None
    assert out.attributes == {"title": "item sku-1", "price": 10}
    assert Image.open(io.BytesIO(out.jpeg)).size == (1024, 512)  # image_max_side
    reasons = {d.key: (d.reason, d.stage) for d in send.dead_letters()}
    assert reasons == {
        "sku-2": (DeadLetterReason.SCHEME_NOT_ALLOWED, "fetch"),
        "sku-3": (DeadLetterReason.ADDRESS_REFUSED, "fetch"),
        "sku-4": (DeadLetterReason.HTTP_STATUS, "fetch"),
        "sku-5": (DeadLetterReason.NOT_AN_IMAGE, "decode"),
        "junk": (DeadLetterReason.BAD_RECORD, "fetch"),
    }
    letters = {d.key: d for d in send.dead_letters()}
    assert letters["sku-2"].reference == "ftp://shop.example/2.jpg"
    assert letters["sku-2"].source_id == "spring"


# ---------------------------------------------------------------------------------------------
# sink agent


def tagged(n: int) -> TaggedImage:
    f = frame(n)
    return TaggedImage(
        event_id=f.event_id,
        source_kind=f.source_kind,
        source_id=f.source_id,
        captured_at=f.captured_at,
        submitted_at=f.submitted_at,
        width=64,
        height=48,
        model_version="fake-tagger-1",
        timings={"infer": 0.1},
        garments=(),
        people=(),
        frame_number=n,
    )


def test_sink_agent_retries_while_postgres_is_down_and_acks_after_commit(tmp_path: Path) -> None:
    send = Recorder()
    sink = FakeSink(unavailable=2)
    p = pipeline(tmp_path, send, sink=sink)

    async def go() -> None:
        async with p.sink_agent.test_context() as agent:
            messages = [await put(agent, b"cam-1", tagged(n).to_json()) for n in range(3)]
            await until(lambda: sink.flushes >= 2, "failed flushes")
            assert not sink.rows
            assert not any(m.acked for m in messages)
            await until(lambda: len(sink.rows) == 3, "rows after Postgres is back")
            await until(lambda: all(m.acked for m in messages), "acks after commit")

    run(go())
    assert sink.flushes == 3
    assert all(name.startswith("fs-sink") for name in sink.threads)
    assert send.dead_letters() == []


def test_sink_agent_dead_letters_rejected_and_garbage_records(tmp_path: Path) -> None:
    send = Recorder()
    sink = FakeSink(reject=frozenset({tagged(1).event_id}))
    p = pipeline(tmp_path, send, sink=sink)

    async def go() -> None:
        async with p.sink_agent.test_context() as agent:
            messages = [
                await put(agent, b"cam-1", tagged(0).to_json()),
                await put(agent, b"cam-1", tagged(1).to_json()),
                await put(agent, b"junk", b'{"schema": "fashion.tagged_image.v1"}'),
            ]
            await until(lambda: len(send.dead_letters()) == 2, "2 dead letters")
            await until(lambda: all(m.acked for m in messages), "acks")

    run(go())
    assert set(sink.rows) == {(tagged(0).event_id, "fake-tagger-1")}
    letters = {d.origin.offset: d for d in send.dead_letters() if d.origin}
    assert letters[1].reason is DeadLetterReason.SINK_REJECTED
    assert "violates check" in letters[1].detail
    assert letters[1].reference == "cam-1#1"
    assert letters[2].reason is DeadLetterReason.BAD_RECORD
    assert (letters[2].origin.topic if letters[2].origin else None) == Topic.ITEMS.value


# ---------------------------------------------------------------------------------------------
# the Faust app's configuration and the worker's tagger hook


def test_faust_app_is_configured_from_settings(tmp_path: Path) -> None:
    conf = Settings.from_env(
        {},
        state_dir=tmp_path,
        kafka_bootstrap="k1:9092,k2:9092",
        consumer_group="shop-tagger",
        kafka_session_timeout_s=6.0,
        max_message_bytes=5 * 1024 * 1024,
    )
    app = faust_app(conf)
    assert app.conf.id == "shop-tagger"
    assert [str(u) for u in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert app.conf.broker_session_timeout == 6.0
    assert app.conf.broker_heartbeat_interval == 2.0
    assert app.conf.producer_max_request_size >= conf.max_message_bytes
    assert app.conf.consumer_max_fetch_size >= conf.max_message_bytes
    assert app.conf.topic_allow_declare is False
    assert app.conf.topic_disable_leader is True
    assert app.conf.web_enabled is False
    assert app.conf.stream_publish_on_commit is False
    assert app.conf.producer_acks == -1


def test_the_workers_consumer_fetches_wait_a_quarter_second_not_fausts_one_and_a_half(
    tmp_path: Path,
) -> None:
    app = faust_app(Settings.from_env({}, state_dir=tmp_path))

    async def built() -> Any:  # aiokafka builds its consumer inside a running loop
        thread = cast(Any, app.consumer)._thread
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(built())
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 250
    assert consumer._group_id == app.conf.id  # otherwise Faust's own consumer, as before


def test_pipeline_registers_one_actor_per_agent_on_the_four_topics(tmp_path: Path) -> None:
    p = pipeline(tmp_path, Recorder())
    agents = {a.name: a for a in p.app.agents.values()}
    assert {a.concurrency for a in agents.values()} == {1}
    assert {a.channel.get_topic_name() for a in agents.values()} == {
        Topic.IMAGES.value,
        Topic.FRAMES.value,
        Topic.ITEMS.value,
    }
    assert p.deadletter_topic.get_topic_name() == Topic.DEADLETTER.value


# ---------------------------------------------------------------------------------------------
# issue 9: no single record may stop the pipeline


class LimitedRecorder(Recorder):
    """A Recorder that refuses records over `limit` bytes the way aiokafka does (raising from
    the send), so that a record the agents failed to size-check crashes like in production."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def __call__(
        self, topic: Topic, key: bytes | None, value: bytes, headers: Any
    ) -> Awaitable[Any]:
        size = len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers or ())
        if size > self.limit:
            from aiokafka.errors import MessageSizeTooLargeError

            raise MessageSizeTooLargeError(f"{size} bytes")
        return await super().__call__(topic, key, value, headers)


def small_pipeline(tmp_path: Path, send: Recorder, limit: int, **kwargs: Any) -> Pipeline:
    conf = dataclasses.replace(settings(tmp_path), max_message_bytes=limit)
    return Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=kwargs.get("tagger") or FakeTagger(),
        sink=kwargs.get("sink") or FakeSink(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        fetcher_factory=lambda: kwargs.get("fetcher") or FakeFetcher(kwargs.get("bodies") or {}),  # type: ignore[arg-type,return-value]
        send=send,
    )


def test_case1_a_dead_letter_of_a_huge_url_fits_and_the_partition_moves_on(
    tmp_path: Path,
) -> None:
    """A feed row whose URL is larger than a Kafka message (the server answers 404): its dead
    letter carried the URL twice and crashed the agent; now it is bounded and sent."""
    limit = 200_000
    send = LimitedRecorder(limit)
    huge = "https://shop.example/" + "a" * 150_000 + ".jpg"
    p = small_pipeline(tmp_path, send, limit, bodies={URL: jpeg()})

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            messages = [
                await put(agent, b"sku-1", request("sku-1", huge)),
                await put(agent, b"sku-2", request("sku-2", URL)),
            ]
            await until(lambda: len(send.sent) == 2, "a dead letter and a frame")
            await until(lambda: all(m.acked for m in messages), "both released")
        assert not p.app.crashed

    run(go())
    (letter,) = send.dead_letters()
    assert letter.reason is DeadLetterReason.HTTP_STATUS
    assert letter.reference is not None
    assert "truncated" in letter.reference
    assert "sha256" in letter.reference
    assert len(send.on(Topic.DEADLETTER)[0][1]) < 20_000
    assert len(send.on(Topic.FRAMES)) == 1


def test_case2_a_frame_whose_headers_make_it_oversize_is_dead_lettered(tmp_path: Path) -> None:
    """A feed row with a huge column: the JPEG alone fits, the record with its attributes
    header does not. It was size-checked on the JPEG only and crashed the agent."""
    limit = 100_000
    send = LimitedRecorder(limit)
    p = small_pipeline(tmp_path, send, limit, bodies={URL: jpeg(size=(256, 256))})
    big = ImageRequest(
        feed="spring",
        item_id="sku-big",
        image_url=URL,
        submitted_at=1_800_000_000.0,
        attributes={"description": "x" * 150_000},
    ).to_json()

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            messages = [
                await put(agent, b"sku-big", big),
                await put(agent, b"sku-1", request("sku-1", URL)),
            ]
            await until(lambda: len(send.sent) == 2, "a dead letter and a frame")
            await until(lambda: all(m.acked for m in messages), "both released")
        assert not p.app.crashed

    run(go())
    (letter,) = send.dead_letters()
    assert (letter.key, letter.reason) == ("sku-big", DeadLetterReason.OVERSIZE_MESSAGE)
    assert "over max_message_bytes" in letter.detail
    ((key, _v, _h),) = send.on(Topic.FRAMES)
    assert key == b"sku-1"


def test_a_tagged_result_over_the_message_limit_is_dead_lettered(tmp_path: Path) -> None:
    """The frame fits, its tagged record does not (here: a model version of 70 kB): that
    frame's dead letter, not a crash of the tagging agent."""
    limit = 60_000
    send = LimitedRecorder(limit)
    p = small_pipeline(tmp_path, send, limit, tagger=FakeTagger(model_version="m" * 70_000))

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            messages = [
                await put(agent, b"cam-1", f.jpeg, f.headers()) for f in map(frame, range(2))
            ]
            await until(lambda: all(m.acked for m in messages), "both released")
        assert not p.app.crashed

    run(go())
    assert send.on(Topic.ITEMS) == []
    letters = send.dead_letters()
    assert [d.reason for d in letters] == [DeadLetterReason.OVERSIZE_MESSAGE] * 2
    assert {d.stage for d in letters} == {"tag"}


def test_a_record_that_cannot_even_be_dead_lettered_is_counted_and_skipped(
    tmp_path: Path,
) -> None:
    class RefusingDeadLetters(Recorder):
        async def __call__(
            self, topic: Topic, key: bytes | None, value: bytes, headers: Any
        ) -> Awaitable[Any]:
            if topic is Topic.DEADLETTER:
                from aiokafka.errors import MessageSizeTooLargeError

                raise MessageSizeTooLargeError("the broker's limit is lower")
            return await super().__call__(topic, key, value, headers)

    send = RefusingDeadLetters()
    registry = CollectorRegistry()
    conf = settings(tmp_path)
    p = Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=FakeTagger(),
        sink=FakeSink(),
        metrics=Metrics(registry, process_metrics=False),
        fetcher_factory=lambda: FakeFetcher({URL: jpeg()}),  # type: ignore[arg-type,return-value]
        send=send,
    )

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            messages = [
                await put(agent, b"junk", b"{not json"),
                await put(agent, b"sku-1", request("sku-1", URL)),
            ]
            await until(lambda: all(m.acked for m in messages), "both released")
        assert not p.app.crashed

    run(go())
    assert len(send.on(Topic.FRAMES)) == 1
    failed = registry.get_sample_value(
        "fashionstream_dead_letters_failed_total", {"stage": "fetch"}
    )
    assert failed == 1.0


class SlowFetcher(FakeFetcher):
    """URLs containing 'slow' take `delay_s`; the others answer at once."""

    def __init__(self, bodies: dict[str, bytes], delay_s: float) -> None:
        super().__init__(bodies)
        self.delay_s = delay_s

    async def fetch(self, url: str) -> FetchedImage:
        if "slow" in url:
            await asyncio.sleep(self.delay_s)
        return await super().fetch(url)


def test_case7_one_slow_fetch_occupies_one_slot_not_a_batch(tmp_path: Path) -> None:
    """fetch_concurrency=4; the first of eight URLs is slow: the seven fast ones must all be
    fetched while it is still running (before: the second batch of four waited for it)."""
    send = Recorder()
    urls = [f"https://shop.example/{'slow' if n == 0 else 'fast'}-{n}.jpg" for n in range(8)]
    fetcher = SlowFetcher({u: jpeg() for u in urls}, delay_s=3.0)
    p = small_pipeline(tmp_path, send, 8 * 1024 * 1024, fetcher=fetcher)

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            loop = asyncio.get_running_loop()
            started = loop.time()
            messages = [
                await put(agent, f"sku-{n}".encode(), request(f"sku-{n}", u))
                for n, u in enumerate(urls)
            ]
            await until(lambda: len(send.on(Topic.FRAMES)) >= 7, "the 7 fast frames")
            fast_s = loop.time() - started
            assert fast_s < 2.0, f"fast fetches waited for the slow one: {fast_s:.1f} s"
            assert not messages[0].acked
            assert not any(m.acked for m in messages[1:])  # released in offset order
            await until(lambda: all(m.acked for m in messages), "all released")

    run(go())
    keys = sorted(k or b"" for k, _v, _h in send.on(Topic.FRAMES))
    assert keys == sorted(f"sku-{n}".encode() for n in range(8))


def test_offsets_are_released_in_order_when_fetches_finish_out_of_order(tmp_path: Path) -> None:
    send = Recorder()
    urls = ["https://shop.example/slow-0.jpg", URL]
    fetcher = SlowFetcher({u: jpeg() for u in urls}, delay_s=1.0)
    p = small_pipeline(tmp_path, send, 8 * 1024 * 1024, fetcher=fetcher)

    async def go() -> None:
        async with p.fetch_agent.test_context() as agent:
            first = await put(agent, b"sku-0", request("sku-0", urls[0]))
            second = await put(agent, b"sku-1", request("sku-1", urls[1]))
            await until(lambda: len(send.on(Topic.FRAMES)) == 1, "the fast frame")
            await asyncio.sleep(0.2)
            assert not second.acked  # done, but the earlier offset is not yet durable
            await until(lambda: first.acked and second.acked, "both released")

    run(go())


def test_case5_on_stop_held_batches_are_never_released_and_faust_does_not_wait_for_them(
    tmp_path: Path,
) -> None:
    """Postgres is down: the sink holds its batch and retries. On SIGTERM the held records are
    never acked (the next worker reads them again), and Faust's stop does not wait for them --
    nor for a record still buffered behind the busy agent, which nothing will ack either (CI
    once hit the worker's 15 s shutdown bound on such records)."""
    send = Recorder()
    sink = FakeSink(unavailable=10_000)
    p = pipeline(tmp_path, send, sink=sink)

    async def go() -> None:
        async with p.sink_agent.test_context() as agent:
            messages = [await put(agent, b"cam-1", tagged(n).to_json()) for n in range(3)]
            await until(lambda: sink.flushes >= 2, "the retries")
            consumer: Any = p.app.consumer
            # fetched and given to the stream, not yet taken by the agent
            buffered = agent.to_message(b"cam-1", tagged(3).to_json(), offset=agent.sent_offset)
            buffered.incref()
            consumer._unacked_messages.update([*messages, buffered])  # as Faust tracks them
            assert p.begin_shutdown() == 3
            sink.unavailable = 0  # Postgres back: the batch commits, but is not released
            # Faust's own stop of the consumer: commits what was acked, waits for nothing
            stop = asyncio.ensure_future(p.app._consumer_wait_empty(consumer, p.app.log))
            try:
                await until(stop.done, "Faust's stop of the consumer")
            finally:
                consumer._unacked_messages.clear()  # lets a waiting stop end (if the test failed)
                stop.cancel()
            await until(lambda: len(sink.rows) == 3, "the rows")
            await asyncio.sleep(0.2)
            assert not any(m.acked for m in messages)

    run(go())


def test_a_sink_that_raises_the_unforeseen_dead_letters_only_that_record(tmp_path: Path) -> None:
    class BuggySink(FakeSink):
        def flush(self) -> int:
            if any(t.frame_number == 1 for t in self.pending.values()):
                self.flushes += 1
                raise KeyError("a bug that only record 1 triggers")
            return super().flush()

    send = Recorder()
    sink = BuggySink()
    p = pipeline(tmp_path, send, sink=sink)

    async def go() -> None:
        async with p.sink_agent.test_context() as agent:
            messages = [await put(agent, b"cam-1", tagged(n).to_json()) for n in range(3)]
            await until(lambda: all(m.acked for m in messages), "all released")

    run(go())
    assert {k[0] for k in sink.rows} == {tagged(0).event_id, tagged(2).event_id}
    (letter,) = send.dead_letters()
    assert letter.reason is DeadLetterReason.INTERNAL_ERROR
    assert "KeyError" in letter.detail


# ---------------------------------------------------------------------------------------------
# consumer lag


def test_consumer_lag_runs_from_the_offsets_faust_monitor_saw_committed(tmp_path: Path) -> None:
    """The lag sample reads committed offsets from Faust's Monitor sensor (what
    `Monitor.on_tp_commit` recorded), and the consumer's position for a partition this worker
    has committed nothing on yet."""
    from faust.types import TP

    committed, fresh = TP(Topic.ITEMS.value, 0), TP(Topic.ITEMS.value, 1)

    class Consumer:
        def assignment(self) -> set[TP]:
            return {committed, fresh}

        async def highwaters(self, *partitions: TP) -> dict[TP, int]:
            return {committed: 50, fresh: 30}

        async def position(self, tp: TP) -> int:
            assert tp == fresh, "a committed partition's lag needs no position"
            return 10

    registry = CollectorRegistry()
    conf = settings(tmp_path)
    p = Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=FakeTagger(),
        sink=FakeSink(),
        metrics=Metrics(registry, process_metrics=False),
        fetcher_factory=lambda: FakeFetcher({}),  # type: ignore[arg-type,return-value]
        send=Recorder(),
    )
    consumer: Any = Consumer()  # only what the lag sample calls
    p.app.consumer = consumer
    p.app.monitor.on_tp_commit({committed: 45})
    run(p._sample_lag())

    def lag(partition: int) -> float | None:
        return registry.get_sample_value(
            "fashionstream_consumer_lag_messages",
            {"topic": Topic.ITEMS.value, "partition": str(partition)},
        )

    assert (lag(0), lag(1)) == (5.0, 20.0)


def live_frame(n: int, captured_at: float, camera: str = "cam-live") -> Frame:
    return dataclasses.replace(
        frame(n, camera),
        event_id=event_id_for_frame(camera, "live:rtsp://cam/1@1.0", n),
        stream_ref="live:rtsp://cam/1@1.0",
        captured_at=captured_at,
        submitted_at=captured_at,
    )


def live_pipeline(tmp_path: Path, send: Recorder, tagger: FakeTagger, **changes: Any) -> Pipeline:
    conf = dataclasses.replace(settings(tmp_path), **changes)
    return Pipeline(
        conf,
        app=faust_app(conf, app_id=f"test-{uuid.uuid4().hex[:8]}"),
        tagger=tagger,
        sink=FakeSink(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        fetcher_factory=lambda: FakeFetcher({}),  # type: ignore[arg-type,return-value]
        send=send,
    )


def tag_all(p: Pipeline, send: Recorder, frames: list[Frame], rows: int) -> list[TaggedImage]:
    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            messages = [await put(agent, f.key.encode(), f.jpeg, f.headers()) for f in frames]
            await until(lambda: len(send.on(Topic.ITEMS)) == rows, f"{rows} tagged images")
            await until(lambda: all(m.acked for m in messages), "acks, skipped frames' too")

    run(go())
    return [TaggedImage.from_json(v) for _k, v, _h in send.on(Topic.ITEMS)]


def skipped(p: Pipeline, camera: str, reason: str) -> float | None:
    return p.metrics.registry.get_sample_value(
        "fashionstream_camera_frames_skipped_total", {"camera": camera, "reason": reason}
    )


def test_stale_live_frames_are_skipped_and_counted_recordings_never(tmp_path: Path) -> None:
    send = Recorder()
    p = live_pipeline(tmp_path, send, FakeTagger(), live_newest_only=False)
    now = time.time()
    stale = [live_frame(n, now - 60 + n) for n in range(3)]  # a minute old: the worker is behind
    fresh = live_frame(3, now)
    old_recording = frame(7)  # captured in 2027 by its metadata, sent now: never skipped
    items = tag_all(p, send, [*stale, fresh, old_recording], rows=2)
    assert [t.event_id for t in items] == [fresh.event_id, old_recording.event_id]
    assert send.dead_letters() == []  # a skipped frame is a policy, not bad input
    assert skipped(p, "cam-live", "stale") == 3
    # the silent-camera alert's input: the newest live capture time, skipped frames included
    registry = p.metrics.registry
    heard = registry.get_sample_value(
        "fashionstream_camera_last_frame_timestamp_seconds", {"camera": "cam-live"}
    )
    assert heard == pytest.approx(fresh.captured_at)
    assert (
        registry.get_sample_value(
            "fashionstream_camera_last_frame_timestamp_seconds", {"camera": "cam-1"}
        )
        is None
    )  # a recording's camera is not live: it ends, it does not fall silent


def test_a_live_frame_with_a_newer_one_of_its_camera_waiting_is_skipped(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger()
    p = live_pipeline(tmp_path, send, tagger, batch_size=8, batch_within_s=0.3)
    now = time.time()
    waiting = [live_frame(n, now - 1.5 + 0.5 * n) for n in range(4)]  # within live_max_age_s
    other = live_frame(0, now - 1.0, camera="cam-other")
    items = tag_all(p, send, [*waiting, other], rows=2)
    # the newest of each camera
    assert [t.event_id for t in items] == [waiting[-1].event_id, other.event_id]
    assert skipped(p, "cam-live", "superseded") == 3
    assert skipped(p, "cam-other", "superseded") is None


def test_a_live_frame_is_skipped_when_a_newer_one_reached_the_worker_in_a_later_batch(
    tmp_path: Path,
) -> None:
    """The worker takes live batches ahead of the one being inferred (they hold JPEG bytes,
    not pixels), so it tags each camera's newest frame, not the next one in the log."""
    send = Recorder()
    tagger = FakeTagger(seconds_per_image=0.4)
    p = live_pipeline(tmp_path, send, tagger, batch_size=1)

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            first = live_frame(0, time.time(), camera="cam-a")
            await put(agent, first.key.encode(), first.jpeg, first.headers())
            await until(lambda: len(tagger.batches) == 1, "cam-a's first frame being tagged")
            # while it is: one batch each, all taken before the next inference starts
            for n, camera in ((1, "cam-a"), (0, "cam-b"), (2, "cam-a")):
                f = live_frame(n, time.time(), camera=camera)
                await put(agent, f.key.encode(), f.jpeg, f.headers())
            await until(lambda: len(send.on(Topic.ITEMS)) == 3, "3 tagged images")

    run(go())
    items = [TaggedImage.from_json(v) for _k, v, _h in send.on(Topic.ITEMS)]
    assert [(t.source_id, t.frame_number) for t in items] == [
        ("cam-a", 0),
        ("cam-b", 0),
        ("cam-a", 2),
    ]
    assert skipped(p, "cam-a", "superseded") == 1
    assert tagger.batches == [1, 1, 1]  # the skipped frame was never inferred


def test_a_bad_live_frame_is_dead_lettered_though_a_newer_one_supersedes_it(
    tmp_path: Path,
) -> None:
    """Live frames are decoded only when their chunk is tagged, but every one is checked when
    taken: a truncated frame gets its dead letter, skipped or not."""
    send = Recorder()
    p = live_pipeline(tmp_path, send, FakeTagger(), batch_size=8, batch_within_s=0.3)
    now = time.time()
    broken = dataclasses.replace(live_frame(0, now - 0.5), jpeg=jpeg(size=(640, 480))[:700])
    newer = live_frame(1, now)
    items = tag_all(p, send, [broken, newer], rows=1)
    assert [t.event_id for t in items] == [newer.event_id]
    (letter,) = send.dead_letters()
    assert (letter.reason, letter.stage) == (DeadLetterReason.TRUNCATED_IMAGE, "decode")


def test_live_max_age_zero_and_not_newest_only_never_skip(tmp_path: Path) -> None:
    send = Recorder()
    p = live_pipeline(tmp_path, send, FakeTagger(), live_max_age_s=0.0, live_newest_only=False)
    frames = [live_frame(n, time.time() - 600) for n in range(3)]
    items = tag_all(p, send, frames, rows=3)
    assert [t.event_id for t in items] == [f.event_id for f in frames]


def test_live_frames_are_tagged_in_chunks_and_in_order(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger()
    # batch_size 4, live_batch_size 1; every live frame tagged (none skipped as superseded)
    p = live_pipeline(tmp_path, send, tagger, live_newest_only=False)
    now = time.time()
    frames = [live_frame(n, now - 0.1 * (4 - n)) for n in range(4)] + [frame(n) for n in range(4)]

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            for f in frames:
                await put(agent, f.key.encode(), f.jpeg, f.headers())
            await until(lambda: len(send.on(Topic.ITEMS)) == 8, "8 tagged images")

    run(go())
    # a batch with live frames: one frame per inference call; a recording's batch: whole
    assert max(tagger.batches[:4]) == 1
    assert max(tagger.batches) <= 4
    items = [TaggedImage.from_json(v) for _k, v, _h in send.on(Topic.ITEMS)]
    assert [t.event_id for t in items] == [f.event_id for f in frames]  # order kept


def test_live_cameras_take_turns_the_one_tagged_longest_ago_first(tmp_path: Path) -> None:
    send = Recorder()
    tagger = FakeTagger()
    p = live_pipeline(tmp_path, send, tagger)
    now = time.time()
    first = [live_frame(0, now, camera="cam-a"), live_frame(0, now, camera="cam-b")]
    # the next batch brings cam-b's frame first; cam-a was tagged longer ago, so it goes first
    second = [live_frame(1, now + 0.5, camera="cam-b"), live_frame(1, now + 0.5, camera="cam-a")]

    async def go() -> None:
        async with p.tag_agent.test_context() as agent:
            for f in first:
                await put(agent, f.key.encode(), f.jpeg, f.headers())
            await until(lambda: len(send.on(Topic.ITEMS)) == 2, "the first batch")
            for f in second:
                await put(agent, f.key.encode(), f.jpeg, f.headers())
            await until(lambda: len(send.on(Topic.ITEMS)) == 4, "the second batch")

    run(go())
    order = [source.camera for batch in tagger.sources for source in batch or [] if source]
    assert order == ["cam-a", "cam-b", "cam-a", "cam-b"]
