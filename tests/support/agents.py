"""Stand-ins for an agent's surroundings in in-process agent tests: the Kafka send (`Recorder`),
the Postgres sink (`FakeSink`), delivering a record to an agent as Faust does (`put`), and
running and waiting inside the test's event loop (`run`, `until`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fashionstream.core.records import DeadLetter, TaggedImage, Topic
from sinks.errors import PostgresUnavailableError, RecordsRejectedError, RejectedRecord

TIMEOUT_S = 20.0


class Recorder:
    """A `Send` that records records; `auto_ack=False` leaves the broker acknowledgements to the
    test (`ack_all`, `fail_all`)."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self.sent: list[tuple[Topic, bytes | None, bytes, Any]] = []
        self.pending: list[asyncio.Future[None]] = []

    async def __call__(
        self, topic: Topic, key: bytes | None, value: bytes, headers: Any
    ) -> Awaitable[Any]:
        self.sent.append((topic, key, value, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    def ack_all(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        for future in self.pending:
            if not future.done():
                future.set_exception(exc)

    def on(self, topic: Topic) -> list[tuple[bytes | None, bytes, Any]]:
        return [(k, v, h) for t, k, v, h in self.sent if t is topic]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.from_json(v) for _k, v, _h in self.on(Topic.DEADLETTER)]


class FakeSink:
    """add()/flush() like PostgresSink: `unavailable` flushes fail first, `reject` event ids
    are refused, everything else is 'committed' into `rows`."""

    def __init__(self, unavailable: int = 0, reject: frozenset[str] = frozenset()) -> None:
        self.unavailable = unavailable
        self.reject = reject
        self.pending: dict[tuple[str, str], TaggedImage] = {}
        self.rows: dict[tuple[str, str], TaggedImage] = {}
        self.flushes = 0
        self.threads: set[str] = set()

    def add(self, tagged: TaggedImage) -> None:
        self.pending[(tagged.event_id, tagged.model_version)] = tagged

    def flush(self) -> int:
        self.flushes += 1
        self.threads.add(threading.current_thread().name)
        if self.unavailable:
            self.unavailable -= 1
            raise PostgresUnavailableError("connection refused")
        batch, self.pending = list(self.pending.values()), {}
        rejected = [
            RejectedRecord(t, "new row violates check") for t in batch if t.event_id in self.reject
        ]
        for t in batch:
            if t.event_id not in self.reject:
                self.rows[(t.event_id, t.model_version)] = t
        if rejected:
            raise RecordsRejectedError(rejected, written=len(batch) - len(rejected))
        return len(batch)

    def discard(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass


async def put(agent: Any, key: bytes | None, value: bytes | None, headers: Any = None) -> Any:
    """Deliver one record to the agent the way Faust's conductor does (one reference held by
    the stream), without waiting; returns its Message."""
    channel = agent.stream().channel
    message = agent.to_message(key, value, offset=agent.sent_offset, headers=headers)
    agent.sent_offset += 1
    message.incref()
    await channel.put(await channel.decode(message))
    return message


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(TIMEOUT_S / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=TIMEOUT_S * 2))
