"""How agents produce: one `Send` callable for every output topic, injected into each stage.

`checked(send, max_bytes)` refuses a record larger than `max_message_bytes` before it reaches the
producer (aiokafka would raise MessageSizeTooLargeError out of the agent): key, value and every
header counted, which is how the broker counts them.

`Send(topic, key, value, headers)` hands the record to the producer and returns the
broker-acknowledgement future; a stage awaits those futures before releasing the offsets of the
records it consumed. The real one wraps Faust's `Topic.send`; agent tests inject a recorder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fashionstream.core.errors import DeadLetterReason, PipelineError
from fashionstream.core.records import Topic

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


class OversizeMessageError(PipelineError):
    """A record produced for one input would be over `max_message_bytes`: that input's dead
    letter, not a failure of the agent."""

    def __init__(self, topic: Topic, size: int, limit: int) -> None:
        super().__init__(
            DeadLetterReason.OVERSIZE_MESSAGE,
            f"the {topic.value} record would be {size} bytes (key, value and headers),"
            f" over max_message_bytes={limit}",
        )


def message_size(key: bytes | None, value: bytes, headers: Headers | None) -> int:
    """Bytes of a record's key, value and headers (names and values)."""
    size = len(key or b"") + len(value)
    for name, header in headers or ():
        size += len(name.encode("utf-8", "surrogatepass")) + len(header)
    return size


def checked(send: Send, max_bytes: int) -> Send:
    """`send`, refusing (OversizeMessageError) a record over `max_bytes` before it is handed to
    the producer."""

    async def checked_send(
        topic: Topic, key: bytes | None, value: bytes, headers: Headers | None
    ) -> Awaitable[Any]:
        size = message_size(key, value, headers)
        if size > max_bytes:
            raise OversizeMessageError(topic, size, max_bytes)
        return await send(topic, key, value, headers)

    return checked_send
