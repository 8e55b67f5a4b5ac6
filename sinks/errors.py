"""The two ways a Postgres write fails, which callers must treat differently:

- `PostgresUnavailableError`: Postgres cannot be reached, the connection broke, or the database is
  not usable as a whole (e.g. not migrated). No record is at fault: keep the batch, back off,
  flush again (a new connection is made). Deliberately *not* a `PipelineError`, so code that
  dead-letters every `PipelineError` cannot drop a batch because Postgres restarted.
- `RecordsRejectedError`: Postgres refused specific records (a constraint, a value out of range,
  bytes it cannot store). Every other record of the batch was committed; the rejected ones are
  dead-lettered with reason SINK_REJECTED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fashionstream.errors import SinkError
from fashionstream.records import DeadLetterReason, TaggedImage


class PostgresUnavailableError(Exception):
    """Retry the same batch later; nothing of it was committed."""


@dataclass(frozen=True)
class RejectedRecord:
    tagged: TaggedImage
    detail: str  # Postgres' message (with its SQLSTATE), for the dead letter


class RecordsRejectedError(SinkError):
    """Some records were refused; the rest of the batch is committed."""

    def __init__(self, rejected: Sequence[RejectedRecord], written: int) -> None:
        first = rejected[0].detail if rejected else ""
        super().__init__(
            DeadLetterReason.SINK_REJECTED,
            f"{len(rejected)} of {len(rejected) + written} records rejected; first: {first}",
        )
        self.rejected = tuple(rejected)
        self.written = written
