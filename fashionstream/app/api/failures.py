"""Which submissions the pipeline gave up on: the API tails `fashion.deadletter.v1` (no consumer
group: every API process reads every letter) and remembers the recent failures of catalogue
images by event id, so `?wait` and GET /v1/images/{id} can say "failed: not_an_image" instead of
"not tagged yet" forever.

Every stage's dead letter of a catalogue image names its feed (`source_id`), item id (`key`)
and URL (`reference`): the fetch stage's (the request), the tagging stage's (its frame: key =
item id, reference = the image URL) and the sink's (its tagged item, the same), which is all
`event_id_for_item` needs. A camera frame's letter (reference camera#frame) names no submission.

At its start the tail reads back the last `REMEMBERED` letters of the topic (spread over its
partitions), so a failure from before the API started is known too, as far as the topic and the
memory reach. A submission sent again starts over (`forget`): a failure older than that, read
back later, no longer counts.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fashionstream.core.errors import BadRecordError
from fashionstream.core.records import DeadLetter, Topic, event_id_for_item, normal_event_id
from fashionstream.core.settings import Settings

log = logging.getLogger(__name__)

REMEMBERED = 10_000  # recent failures kept; older ones are forgotten first
RETRY_S = 5.0  # between attempts to reach the broker


@dataclass(frozen=True)
class Failure:
    reason: str  # a DeadLetterReason value
    detail: str
    stage: str
    failed_at: float


class RecentFailures:
    """A bounded, thread-safe map event id -> the latest failure of that submission."""

    def __init__(self, capacity: int = REMEMBERED, clock: Callable[[], float] = time.time) -> None:
        self._capacity = capacity
        self._clock = clock
        self._failures: collections.OrderedDict[str, Failure] = collections.OrderedDict()
        # event id -> when it was last submitted again: failures before that are history
        self._resubmitted: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def record(self, event_id: str, failure: Failure) -> None:
        key = normal_event_id(event_id)
        with self._lock:
            if failure.failed_at < self._resubmitted.get(key, float("-inf")):
                return  # read back after the image was sent again: that attempt starts over
            self._failures[key] = failure
            self._failures.move_to_end(key)
            _bound(self._failures, self._capacity)

    def forget(self, event_id: str) -> None:
        """A new submission of the same image starts over."""
        key = normal_event_id(event_id)
        with self._lock:
            self._failures.pop(key, None)
            self._resubmitted[key] = self._clock()
            self._resubmitted.move_to_end(key)
            _bound(self._resubmitted, self._capacity)

    def get(self, event_id: str) -> Failure | None:
        with self._lock:
            return self._failures.get(normal_event_id(event_id))

    def add_letters(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            event_id = submission_event_id(letter)
            if event_id is not None:
                self.record(
                    event_id,
                    Failure(letter.reason.value, letter.detail, letter.stage, letter.failed_at),
                )


def _bound(entries: collections.OrderedDict[str, Any], capacity: int) -> None:
    while len(entries) > capacity:
        entries.popitem(last=False)


# the topics a catalogue image passes through: its request, its frame, its tagged item
_SUBMISSION_TOPICS = {Topic.IMAGES.value, Topic.FRAMES.value, Topic.ITEMS.value}


def submission_event_id(letter: DeadLetter) -> str | None:
    """The event id of the catalogue image a dead letter reports, at any stage, when it reports
    one (a camera frame's letter, whose reference is camera#frame, does not)."""
    origin = letter.origin
    if origin is None or origin.topic not in _SUBMISSION_TOPICS:
        return None
    if not letter.source_id or not letter.key or not letter.reference:
        return None
    if "://" not in letter.reference:  # camera#frame: not a submitted URL
        return None
    return event_id_for_item(letter.source_id, letter.key, letter.reference)


class DeadLetterTail:
    """A daemon thread feeding `failures` from the dead-letter topic until `stop()`."""

    def __init__(
        self,
        failures: RecentFailures,
        consumer_factory: Callable[[], Any],
        *,
        retry_s: float = RETRY_S,
    ) -> None:
        self._failures = failures
        self._consumer_factory = consumer_factory
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-dead-letters", daemon=True)
        self.ready = threading.Event()  # set once it reads the topic

    @classmethod
    def from_settings(
        cls, settings: Settings, failures: RecentFailures, *, look_back: int = REMEMBERED
    ) -> DeadLetterTail:
        """Reads the topic from `look_back` letters before its end (spread over its
        partitions) on, at every (re)connection."""

        def consumer() -> Any:
            from kafka import KafkaConsumer, TopicPartition

            kafka_consumer = KafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap.split(","),
                client_id="fashionstream-api",
                enable_auto_commit=False,
                max_partition_fetch_bytes=settings.max_message_bytes,
            )
            partitions = kafka_consumer.partitions_for_topic(Topic.DEADLETTER.value) or set()
            assigned = [TopicPartition(Topic.DEADLETTER.value, p) for p in sorted(partitions)]
            if not assigned:
                kafka_consumer.close()
                raise RuntimeError(f"{Topic.DEADLETTER.value} has no partitions (yet)")
            kafka_consumer.assign(assigned)
            ends = kafka_consumer.end_offsets(assigned)
            beginnings = kafka_consumer.beginning_offsets(assigned)
            per_partition = -(-look_back // len(assigned))
            for partition in assigned:
                start = max(beginnings[partition], ends[partition] - per_partition)
                kafka_consumer.seek(partition, start)
            return kafka_consumer

        return cls(failures, consumer)

    def start(self) -> DeadLetterTail:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self._consumer_factory()
            except Exception as exc:  # the broker is not there yet: try again
                log.info("dead-letter tail: cannot read %s yet: %s", Topic.DEADLETTER, exc)
                self._stop.wait(self._retry_s)
                continue
            self.ready.set()
            try:
                self._follow(consumer)
            except Exception as exc:  # a broken connection: reconnect
                log.warning("dead-letter tail: reconnecting after %r", exc)
                self._stop.wait(self._retry_s)
            finally:
                consumer.close()

    def _follow(self, consumer: Any) -> None:
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                self._failures.add_letters(_letters(records))


def _letters(records: Iterable[Any]) -> Iterable[DeadLetter]:
    for record in records:
        try:
            yield DeadLetter.from_json(record.value)
        except BadRecordError:
            continue  # not ours to judge: the dead-letter topic takes anyone's records
