"""Which submissions the pipeline gave up on: the API tails `fashion.deadletter.v1` (no consumer
group: every API process reads every letter, from the end at its start) and remembers the recent
fetch and decode failures by event id, so `?wait` and GET /v1/images/{id} can say "failed:
not_an_image" instead of "not tagged yet" forever.

A fetch-stage dead letter names its request's feed (`source_id`), item id (`key`) and URL
(`reference`), which is all `event_id_for_item` needs. Letters of later stages, and failures
from before the API started, are not known here (the dead-letter topic is the record of those).
"""

from __future__ import annotations

import collections
import logging
import threading
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

    def __init__(self, capacity: int = REMEMBERED) -> None:
        self._capacity = capacity
        self._failures: collections.OrderedDict[str, Failure] = collections.OrderedDict()
        self._lock = threading.Lock()

    def record(self, event_id: str, failure: Failure) -> None:
        with self._lock:
            self._failures[normal_event_id(event_id)] = failure
            self._failures.move_to_end(normal_event_id(event_id))
            while len(self._failures) > self._capacity:
                self._failures.popitem(last=False)

    def forget(self, event_id: str) -> None:
        """A new submission of the same image starts over."""
        with self._lock:
            self._failures.pop(normal_event_id(event_id), None)

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


def submission_event_id(letter: DeadLetter) -> str | None:
    """The event id of the image request a dead letter reports, when it reports one."""
    origin = letter.origin
    if origin is None or origin.topic != Topic.IMAGES.value:
        return None
    if not letter.source_id or not letter.key or not letter.reference:
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
        self.ready = threading.Event()  # set once it reads from the end of the topic

    @classmethod
    def from_settings(cls, settings: Settings, failures: RecentFailures) -> DeadLetterTail:
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
            kafka_consumer.seek_to_end(*assigned)
            for partition in assigned:  # resolve the end now, not at the first poll
                kafka_consumer.position(partition)
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
