"""When a consumed offset may be committed: only after the event's effect is durable.

What faust-streaming 0.15.3 does (read from its source: streams.py, events.py,
types/tuples.py, transport/consumer.py, app/base.py):

1. Commit = "acked". The consumer commits, every `broker_commit_interval` seconds, on
   rebalance and on stop, the offset after the longest run of consecutive *acked* offsets per
   partition (`Consumer._new_offset`). A message is acked when its reference count (one per
   stream that received it) drops to zero (`Message.ack` -> `Consumer.ack`).
2. `Stream.take(N, within)` / `take_events` turn per-event acking off and ack the whole batch
   in a `finally:` block *after the body of the `async for` returns* -- and also when the body
   raises or is cancelled (the generator is closed, the `finally` runs). So a batch whose
   produce or Postgres write failed, or a worker stopped mid-batch (SIGTERM during a retry),
   would be committed and lost.
3. Gap handling is not safe for out-of-order acks: `_new_offset` only notices a missing head
   offset when it is 2+ past the committed one, and not at all when nothing was committed yet
   (committed offset None or 0). With several actors per agent (concurrency > 1), or acks
   in any order but the offset order, a message can be committed before it was processed.
4. Before committing, the consumer flushes Faust's producer (`_commit_offsets` awaits
   `producer.flush()`), but that does not cover a send that has not been issued yet.
5. On rebalance, `_consumer_wait_empty` waits until every tracked message is acked (bounded
   only by the flight recorder's log), then commits; on stop the consumer does not wait (its
   own `should_stop` ends the loop) and commits what is acked.
6. Events that belong to a previous consumer generation are skipped *and acked*. After a
   rebalance Faust seeks to the committed offsets, so they are read again, but until then an
   offset past them may be committed. This is the one remaining window (a crash between such a
   commit and the reprocessing); it needs a rebalance while a worker is mid-batch.

What the agents here do about it:

- One actor per agent (concurrency=1) consuming with `take_events`: events are acked in offset
  order per partition.
- `HeldBatch` takes an extra reference on every message of a batch before any work starts.
  `take_events`' own ack then only drops the count to one; the final ack -- the one that makes
  the offset committable -- happens in `release()`, which is called only after the batch's
  effect is durable: every record produced for it (results and dead letters) acknowledged by
  the broker (acks=all), or its rows committed in Postgres. A failure or cancellation leaves
  the references held, the offsets are never committed, and the records are read again after
  a restart (at-least-once; the event ids make the re-run idempotent).
- Pipelined batches release in batch order (each batch awaits the previous one first).
- A batch-level failure that is not a bad record (broker gone, a bug) crashes the worker
  (CrashingSupervisor): a supervisor restarts it from the committed offsets, instead of an agent
  restarted in-process beside held, never-committable offsets.
- `broker_commit_interval` is short (1 s) so a restarted worker re-reads little.

Stopping (SIGTERM/SIGINT; see `Holds.stop` and `Pipeline.begin_shutdown`): from that moment no
batch is released any more, so no message is acked any more either -- neither a held one nor one
still waiting in an agent's take buffer (it would be held, never released, once taken). Faust's
stop by default waits until every message in flight is acked (`stream_wait_empty`, point 5):
here that wait could only end at the worker's shutdown bound (a batch held through a Postgres
outage; records buffered behind a busy agent), so the pipeline turns it off when the stop begins
and Faust just commits what was acked. Nothing held is acked, so nothing of it is committed: the
next worker reads it again. Releasing nothing after the stop began also keeps acks in offset
order (a later batch is never acked while an earlier one stays held). The wait stays on for
rebalances, where it lets the batches in flight finish before the partitions move.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class Holds:
    """The batches the agents of one worker hold, and whether the worker is stopping."""

    def __init__(self, consumer: Callable[[], Any]) -> None:
        self._consumer = consumer
        self._held: weakref.WeakSet[HeldBatch] = weakref.WeakSet()
        self._waiting: list[asyncio.Future[None]] = []  # wait_stopping() callers
        self.stopping = False

    def hold(self, events: Sequence[Any]) -> HeldBatch:
        held = HeldBatch(events, self._consumer(), self)
        if not self.stopping:
            self._held.add(held)
        return held

    def stop(self) -> int:
        """The worker is stopping: release nothing from now on, and wake the writers waiting
        out a backoff. Returns how many held messages are left for redelivery (they are never
        acked, so never committed)."""
        self.stopping = True
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)
        left = sum(len(held) for held in self._held if not held.released)
        self._held.clear()
        if left:
            log.warning("stopping: %d records not yet durable are left for redelivery", left)
        return left

    async def wait_stopping(self) -> None:
        """Returns once the worker is stopping (at once if it is). A future per caller, made
        on the caller's loop, rather than one asyncio.Event bound to whichever loop used it
        first."""
        if self.stopping:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        finally:
            if future in self._waiting:
                self._waiting.remove(future)


class HeldBatch:
    """Holds back the commit of a batch of Faust events until `release()`."""

    def __init__(self, events: Sequence[Any], consumer: Any, holds: Holds | None = None) -> None:
        self.events = tuple(events)
        self.consumer = consumer
        self._holds = holds
        self.released = False
        for event in self.events:
            event.message.incref()

    def __len__(self) -> int:
        return len(self.events)

    def release(self) -> None:
        """The batch's effect is durable: let its offsets be committed. Idempotent. Does
        nothing once the worker is stopping (see the module docstring)."""
        if self.released or (self._holds is not None and self._holds.stopping):
            return
        self.released = True
        for event in self.events:
            event.message.ack(self.consumer)
