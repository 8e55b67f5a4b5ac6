"""How agents produce: one `Send` callable for every output topic, injected into each stage.

`Send(topic, key, value, headers)` hands the record to the producer and returns the
broker-acknowledgement future; a stage awaits those futures before releasing the offsets of the
records it consumed. The real one wraps Faust's `Topic.send`; agent tests inject a recorder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fashionstream.records import Topic

Headers = list[tuple[str, bytes]]
Send = Callable[[Topic, bytes | None, bytes, Headers | None], Awaitable[Awaitable[Any]]]


def faust_sender(topics: Mapping[Topic, Any]) -> Send:
    """A Send over Faust topics (`app.topic(...)` objects), keyed by our Topic enum."""

    async def send(
        topic: Topic, key: bytes | None, value: bytes, headers: Headers | None
    ) -> Awaitable[Any]:
        # Faust's Topic.send awaits the hand-over to aiokafka and returns the delivery future
        # (stream_publish_on_commit is off, so nothing is deferred to the commit).
        delivery: Awaitable[Any] = await topics[topic].send(key=key, value=value, headers=headers)
        return delivery

    return send
