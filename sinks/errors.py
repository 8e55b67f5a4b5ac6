"""The two ways a Postgres write fails, which callers must treat differently:

- `PostgresUnavailableError`: Postgres cannot be reached, the connection broke, or the database is
  not usable as a whole (e.g. not migrated). No record is at fault: keep the batch, back off,
  flush again (a new connection is made). Deliberately *not* a `PipelineError`, so code that
  dead-letters every `PipelineError` cannot drop a batch because Postgres restarted.
- `RecordsRejectedError`: Postgres refused specific records (a constraint, a value out of range,
  bytes it cannot store). Every other record of the batch was committed; the rejected ones are
  dead-lettered with reason SINK_REJECTED.

Which one an error is, is decided by its kind, not by a list of known cases (`is_outage`): a
connection that broke or the server's own state (SQLSTATE classes 08, 53, 57, 58, and the
transient 25, 40, 55, XX) is an outage; everything else, from Postgres (classes 21, 22, 23, 42,
54, ...) or from adapting a value on the client, was caused by the record being written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2

from fashionstream.core.errors import DeadLetterReason, SinkError
from fashionstream.core.records import TaggedImage

# SQLSTATE classes that say the server, not the statement's data, is the problem: connection
# exception (08), insufficient resources (53), operator intervention (57: shutdown, cancel),
# system error (58); and the transient ones a retry on a fresh connection clears: invalid
# transaction state (25), transaction rollback (40: serialization, deadlock), object not in
# prerequisite state (55: lock not available), internal error (XX).
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "25", "40", "53", "55", "57", "58", "XX"})


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means Postgres (or the way to it) is unusable right now, so the same
    write should be retried later; False when the written data caused it. A psycopg2 error
    without an SQLSTATE is the client's: a lost or closed connection (OperationalError,
    InterfaceError) is an outage, a value it cannot adapt is the data's fault."""
    if isinstance(exc, SchemaNotReadyError):
        return True
    if not isinstance(exc, psycopg2.Error):
        return False
    code = exc.pgcode
    if code:
        return code[:2] in OUTAGE_SQLSTATE_CLASSES
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


class SchemaNotReadyError(Exception):
    """The tables the sink writes are missing or differ (not migrated): the database, not a
    record, is at fault."""


class PostgresUnavailableError(Exception):
    """Retry the same batch later; nothing of it was committed."""


@dataclass(frozen=True)
class RejectedRecord:
    tagged: TaggedImage
    detail: str  # Postgres' message (with its SQLSTATE), for the dead letter
    # SINK_REJECTED when Postgres refused the data; INTERNAL_ERROR when writing it raised
    # something no one anticipated (the exception's type is in `detail`)
    reason: DeadLetterReason = DeadLetterReason.SINK_REJECTED


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
