"""The pipeline harness's own checks (tests/support/pipeline.py): a consumer group started at the
end of the topics sees only what comes next, and the frame ids it expects are the producer's."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.records import Topic, event_id_for_frame
from fashionstream.core.settings import REPO_ROOT, Settings
from tests.support.pipeline import expected_frame_ids, produce_raw, unique


def test_start_group_at_end_skips_what_was_there(local_stack: Settings) -> None:
    group = unique("harness")
    key = unique("before").encode()
    produce_raw(local_stack, Topic.IMAGES, key, b"old record")
    start_group_at_end(local_stack, group, (Topic.IMAGES,))
    consumer = KafkaConsumer(
        bootstrap_servers=local_stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        partitions = [
            TopicPartition(Topic.IMAGES.value, p)
            for p in sorted(consumer.partitions_for_topic(Topic.IMAGES.value) or [])
        ]
        consumer.assign(partitions)
        after = unique("after").encode()
        produce_raw(local_stack, Topic.IMAGES, after, b"new record")
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while after not in seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                seen.extend(r.key for r in records)
        assert after in seen
        assert key not in seen
    finally:
        consumer.close()


def test_expected_frame_ids_match_what_the_producer_sends() -> None:
    clip = REPO_ROOT / "tests" / "fixtures" / "video" / "person_4s.mp4"
    ids = expected_frame_ids(clip, "cam", 2.0)
    ref = f"{clip.name}:{clip.stat().st_size}"
    assert ids == [event_id_for_frame("cam", ref, n) for n in range(0, 40, 5)]
