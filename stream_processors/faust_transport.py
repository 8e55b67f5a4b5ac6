"""Faust's aiokafka transport with a shorter fetch wait for the worker's consumer.

faust-streaming 0.15.3 builds the worker's aiokafka consumer with `fetch_max_wait_ms=1500` and no
setting to change it. On the embedded broker (Tansu) a record produced while a fetch waits was
handed out a quarter to half a second late: one record every 0.5 s, measured against the running
stack, arrived after a median 351 ms (max 615) at 1500 ms, 250 ms at 1000, 3-4 ms at 500 and 250.
A live camera's frames then waited for the fetch, not for inference, and two of them often landed
in one batch, where the older is skipped: one tram-stop camera at 2 frames/s had a third of its
frames skipped by a worker that was idle most of the time. A broker that answers a fetch as soon
as data arrives (Kafka) does so at any wait; a shorter wait costs an idle consumer a few more
empty fetches a second.
"""

from __future__ import annotations

from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 250


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher when the consumer starts, which is after this
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Set as `app.transport` (the consumer's); producers keep Faust's own."""

    Consumer: ClassVar[Any] = _Consumer
