"""sinks.postgres with a fake connection: batched statements, one commit, typed errors, rollback,
isolation of a rejected record, reconnecting after an outage, and the feed-column adapters."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg2
import psycopg2.extensions
import pytest
from prometheus_client import CollectorRegistry
from psycopg2 import sql

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import MAX_EMBEDDING_DIM, SourceKind, TaggedImage, WireEmbedding
from sinks.errors import PostgresUnavailableError, RecordsRejectedError, is_outage
from sinks.postgres import SCHEMA_PROBE, PostgresSink, embedding_literal, vector_literal
from tests.support.records import tagged_image

TABLE = re.compile(
    rb'^\s*(?:INSERT INTO|DELETE FROM|UPDATE|SELECT [\w, ]+ FROM)\s+"?(\w+)', re.IGNORECASE
)


@pytest.fixture(autouse=True)
def identifiers_quoted_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg2 asks the server's libpq connection to quote an identifier, and the fake
    connection has none: quote the sink's plain lower-case names the way Postgres does."""

    def quote_ident(name: str, _scope: object) -> str:
        return '"' + name.replace('"', '""') + '"'

    monkeypatch.setattr(psycopg2.extensions, "quote_ident", quote_ident)


class FakeCursor:
    """Records statements; answers RETURNING like Postgres would; raises on request."""

    def __init__(self, conn: FakeConnection) -> None:
        self.connection = conn
        self._args: list[tuple[Any, ...]] = []
        self._result: list[tuple[Any, ...]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def mogrify(self, template: bytes, args: tuple[Any, ...]) -> bytes:
        self._args.append(args)
        return b"(row)"

    def execute(self, query: bytes | str | sql.Composable, params: object = None) -> None:
        if isinstance(query, sql.Composable):
            query = query.as_string(self)
        text = query if isinstance(query, bytes) else query.encode()
        if text == SCHEMA_PROBE.as_string(self).encode():
            self.connection.probes += 1
            if self.connection.schema_error is not None:
                raise self.connection.schema_error
            return
        args, self._args = self._args, []
        self.connection.log.append((text, args))
        if self.connection.fail is not None:
            error = self.connection.fail(text, args)
            if error is not None:
                raise error
        match = TABLE.match(text)
        table = match.group(1).decode() if match else ""
        ids = range(self.connection.next_id, self.connection.next_id + len(args))
        self.connection.next_id += len(args)
        known = self.connection.sources
        if table == "sources" and text.lstrip().startswith(b"INSERT"):
            for pk, key in zip(ids, args, strict=True):
                known.setdefault((key[0], key[1]), pk)
            self._result = []
        elif table == "sources" and text.lstrip().startswith(b"SELECT"):
            self._result = [(known[k], *k) for k in map(tuple, args) if k in known]
        elif b"RETURNING" in text:  # catalogue_items, images: an id and the first two values
            self._result = [(pk, a[0], a[1]) for pk, a in zip(ids, args, strict=True)]
        else:
            self._result = []

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._result


class FakeConnection:
    encoding = "UTF8"

    def __init__(
        self,
        fail: Callable[[bytes, list[tuple[Any, ...]]], Exception | None] | None,
        sources: dict[tuple[Any, ...], int],
    ) -> None:
        self.fail = fail
        self.sources = sources  # the "database": (kind, source_id) -> id, across connections
        self.log: list[tuple[bytes, list[tuple[Any, ...]]]] = []
        self.commits = 0
        self.rollbacks = 0
        self.probes = 0
        self.schema_error: Exception | None = None
        self.closed = 0
        self.next_id = 1

    def cursor(self) -> FakeCursor:
        if self.closed:
            raise psycopg2.InterfaceError("connection already closed")
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = 1

    def statements(self) -> list[str]:
        return [_verb(text) for text, _ in self.log]


def _verb(text: bytes) -> str:
    match = TABLE.match(text)
    if match:
        return f"{text.split()[0].decode().upper()} {match.group(1).decode()}"
    return text.decode().strip()


class Factory:
    def __init__(
        self, fail: Callable[[bytes, list[tuple[Any, ...]]], Exception | None] | None = None
    ) -> None:
        self.fail = fail
        self.made: list[FakeConnection] = []
        self.refuse = False
        self.sources: dict[tuple[Any, ...], int] = {}

    def __call__(self) -> FakeConnection:
        if self.refuse:
            raise psycopg2.OperationalError("connection refused")
        conn = FakeConnection(self.fail, self.sources)
        self.made.append(conn)
        return conn


def _sink(factory: Factory) -> tuple[PostgresSink, CollectorRegistry]:
    registry = CollectorRegistry()
    return PostgresSink(factory, Metrics(registry, process_metrics=False)), registry


def test_a_batch_is_one_statement_per_table_and_one_commit() -> None:
    factory = Factory()
    sink, registry = _sink(factory)
    for i in range(10):
        sink.add(tagged_image(index=i, garments=2, people=1))
    sink.add(tagged_image(index=0, garments=2, people=1))  # a redelivery within the batch
    assert sink.pending == 10
    assert sink.flush() == 10
    (conn,) = factory.made
    assert conn.statements() == [
        "SELECT sources",
        "INSERT sources",  # a source never seen before
        "SELECT sources",
        "UPDATE sources",
        "INSERT images",
        "INSERT people",
        "INSERT garments",
        "DELETE garment_embeddings",  # garments without a vector: none left from before
        "DELETE image_embeddings",  # images without a product vector: none left either
        "DELETE garments",
        "DELETE people",
    ]
    rows = {_verb(text): len(args) for text, args in conn.log}
    assert rows == {
        "INSERT sources": 1,
        "SELECT sources": 1,  # the last one: the new source
        "UPDATE sources": 0,  # plain parameters, not a VALUES list
        "INSERT images": 10,
        "INSERT people": 10,
        "INSERT garments": 20,
        "DELETE garment_embeddings": 0,  # plain parameters (an id array)
        "DELETE image_embeddings": 0,
        "DELETE garments": 10,
        "DELETE people": 10,
    }
    inserts = [text for text, _ in conn.log if text.lstrip().startswith(b"INSERT")]
    assert len(inserts) == 4
    assert all(b"ON CONFLICT" in text for text in inserts)
    assert (conn.commits, conn.rollbacks) == (1, 0)
    assert sink.pending == 0
    written = registry.get_sample_value("fashionstream_rows_written_total", {"table": "garments"})
    assert written == 20.0
    batch = registry.get_sample_value("fashionstream_batch_size_records_sum", {"stage": "sink"})
    assert batch == 10.0


def test_a_known_source_is_only_read_never_inserted_or_locked() -> None:
    factory = Factory()
    sink, _ = _sink(factory)
    sink.add(tagged_image(index=1))
    sink.flush()
    sink.add(tagged_image(index=2))
    sink.flush()
    (conn,) = factory.made
    second_flush = conn.statements()[conn.statements().index("DELETE people") + 1 :]
    assert second_flush[:2] == ["SELECT sources", "UPDATE sources"]
    assert "INSERT sources" not in second_flush


def test_feed_items_are_upserted_before_their_images() -> None:
    factory = Factory()
    sink, _ = _sink(factory)
    sink.add(tagged_image(index=1, source_kind=SourceKind.FEED, source_id="f", people=0))
    sink.flush()
    statements = factory.made[0].statements()
    assert statements[4:6] == ["INSERT catalogue_items", "INSERT images"]
    assert "INSERT people" not in statements  # no people: no statement


def test_an_empty_flush_does_not_connect() -> None:
    factory = Factory()
    sink, _ = _sink(factory)
    assert sink.flush() == 0
    assert factory.made == []


def pg_error(code: str, message: str, base: type[psycopg2.Error] = psycopg2.Error) -> Exception:
    """A psycopg2 error carrying an SQLSTATE, as the server's would (psycopg2's own pgcode is
    read-only)."""
    kind = type(f"Fake{code}", (base,), {"pgcode": code})
    return kind(message)


def _fail_on_table(table: str, error: Exception) -> Callable[..., Exception | None]:
    def fail(text: bytes, args: list[tuple[Any, ...]]) -> Exception | None:
        return error if re.match(rb'\s*INSERT INTO "?' + table.encode(), text) else None

    return fail


@pytest.mark.parametrize(
    "error",
    [
        psycopg2.OperationalError("server closed the connection unexpectedly"),
        psycopg2.InterfaceError("connection already closed"),
        pg_error("57P01", "terminating connection due to administrator command"),
        pg_error("53300", "sorry, too many clients already"),
        pg_error("08006", "connection failure"),
        pg_error("58030", "could not write to file"),
    ],
    ids=["connection-lost", "closed", "admin-shutdown", "too-many-clients", "08", "58"],
)
def test_a_database_failure_is_unavailable_and_keeps_the_batch(error: Exception) -> None:
    factory = Factory(_fail_on_table("garments", error))
    sink, registry = _sink(factory)
    sink.add(tagged_image(index=1))
    with pytest.raises(PostgresUnavailableError) as raised:
        sink.flush()
    assert raised.value.__cause__ is error
    (conn,) = factory.made
    assert conn.commits == 0
    assert conn.closed  # dropped: the next flush makes a new connection
    assert sink.pending == 1

    factory.fail = None
    assert sink.flush() == 1
    assert len(factory.made) == 2
    assert factory.made[1].commits == 1
    unavailable = registry.get_sample_value(
        "fashionstream_sink_errors_total", {"error": "unavailable"}
    )
    assert unavailable == 1.0


def test_a_database_that_is_not_migrated_is_unavailable_not_bad_data() -> None:
    """The schema probe on each new connection fails: an outage, even though the SQLSTATE
    (42P01) is of a class that means bad data during a write."""
    factory = Factory()
    sink, _ = _sink(factory)
    sink.add(tagged_image(index=1))
    original = FakeConnection.cursor

    def cursor(self: FakeConnection) -> FakeCursor:
        self.schema_error = pg_error("42P01", 'relation "garments" does not exist')
        return original(self)

    FakeConnection.cursor = cursor  # type: ignore[method-assign]
    try:
        with pytest.raises(PostgresUnavailableError, match="schema is not usable"):
            sink.flush()
    finally:
        FakeConnection.cursor = original  # type: ignore[method-assign]
    assert sink.pending == 1
    assert sink.flush() == 1
    assert [c.probes for c in factory.made] == [1, 1]  # once per connection
    assert sink.flush() == 0


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (pg_error("08006", "connection failure"), True),
        (pg_error("53100", "disk full"), True),
        (pg_error("57P01", "admin shutdown"), True),
        (pg_error("58030", "io error"), True),
        (pg_error("40P01", "deadlock detected"), True),
        (psycopg2.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg2.InterfaceError("connection already closed"), True),
        # raised by the data: 54000 is an OperationalError subclass in psycopg2, still data
        (
            pg_error("54000", "index row size exceeds btree maximum", psycopg2.OperationalError),
            False,
        ),
        (pg_error("21000", "ON CONFLICT DO UPDATE command cannot affect row a second time"), False),
        (pg_error("22P02", "invalid input syntax for type uuid"), False),
        (pg_error("23514", "new row violates check constraint"), False),
        (pg_error("42804", "datatype mismatch"), False),
        (psycopg2.ProgrammingError("can't adapt type 'dict'"), False),
        (ValueError("A string literal cannot contain NUL (0x00) characters."), False),
        (KeyError("item_pk"), False),
    ],
    ids=lambda v: getattr(v, "pgcode", None) or type(v).__name__ if not isinstance(v, bool) else "",
)
def test_outage_or_bad_data_is_decided_by_the_error_class(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage


def _uuid_upper(tagged: TaggedImage) -> TaggedImage:
    return dataclasses.replace(tagged, event_id=tagged.event_id.upper())


def test_one_event_id_in_two_letter_cases_is_one_image() -> None:
    factory = Factory()
    sink, _ = _sink(factory)
    record = tagged_image(index=1)
    sink.add(record)
    sink.add(_uuid_upper(record))
    assert sink.pending == 1
    assert sink.flush() == 1


@pytest.mark.parametrize(
    "error",
    [
        pg_error(
            "54000",
            "index row size 4016 exceeds btree version 4 maximum 2704",
            psycopg2.OperationalError,
        ),
        pg_error("21000", "ON CONFLICT DO UPDATE command cannot affect row a second time"),
        KeyError("a bug in the sink"),
    ],
    ids=["54000", "21000", "internal"],
)
def test_an_error_raised_by_one_record_isolates_it_instead_of_retrying(error: Exception) -> None:
    def fail(text: bytes, args: list[tuple[Any, ...]]) -> Exception | None:
        if text.lstrip().startswith(b"INSERT INTO images") and any(a[8] == 7 for a in args):
            return error
        return None

    factory = Factory(fail)
    sink, registry = _sink(factory)
    good, bad = tagged_image(index=1), tagged_image(index=2, width=7)
    sink.add(good)
    sink.add(bad)
    with pytest.raises(RecordsRejectedError) as raised:
        sink.flush()
    ((rejected),) = raised.value.rejected
    assert rejected.tagged == bad
    expected = "internal_error" if isinstance(error, KeyError) else "sink_rejected"
    assert rejected.reason.value == expected
    assert raised.value.written == 1
    assert sink.pending == 0
    assert (
        registry.get_sample_value("fashionstream_sink_errors_total", {"error": "unavailable"})
        is None
    )


def test_a_refused_connection_is_unavailable() -> None:
    factory = Factory()
    factory.refuse = True
    sink, _ = _sink(factory)
    sink.add(tagged_image(index=1))
    with pytest.raises(PostgresUnavailableError, match="connection refused"):
        sink.flush()
    assert sink.pending == 1


def test_a_rejected_record_is_isolated_with_savepoints() -> None:
    def fail(text: bytes, args: list[tuple[Any, ...]]) -> Exception | None:
        # the images statement fails whenever it carries the bad record (width 0)
        if text.lstrip().startswith(b"INSERT INTO images") and any(a[8] == 0 for a in args):
            return psycopg2.DataError("new row violates check constraint")
        return None

    factory = Factory(fail)
    sink, registry = _sink(factory)
    good = [tagged_image(index=i) for i in range(3)]
    bad = tagged_image(index=9, width=0)
    for record in (good[0], bad, good[1], good[2]):
        sink.add(record)
    with pytest.raises(RecordsRejectedError) as raised:
        sink.flush()
    assert [r.tagged for r in raised.value.rejected] == [bad]
    assert "check constraint" in raised.value.rejected[0].detail
    assert raised.value.written == 3
    assert isinstance(raised.value.__cause__, psycopg2.DataError)
    (conn,) = factory.made
    assert (conn.rollbacks, conn.commits) == (1, 1)  # the batch rolled back, then one commit
    statements = conn.statements()
    assert statements.count("SAVEPOINT fashionstream_record") == 4
    assert statements.count("ROLLBACK TO SAVEPOINT fashionstream_record") == 1
    assert statements.count("RELEASE SAVEPOINT fashionstream_record") == 3
    assert sink.pending == 0
    rejected = registry.get_sample_value("fashionstream_sink_errors_total", {"error": "rejected"})
    assert rejected == 1.0


def test_a_connection_lost_while_isolating_keeps_the_batch() -> None:
    calls = {"n": 0}

    def fail(text: bytes, args: list[tuple[Any, ...]]) -> Exception | None:
        if text.lstrip().startswith(b"INSERT INTO images"):
            calls["n"] += 1
            if calls["n"] == 1:
                return psycopg2.DataError("bad value")
            return psycopg2.OperationalError("server closed the connection unexpectedly")
        return None

    factory = Factory(fail)
    sink, _ = _sink(factory)
    sink.add(tagged_image(index=1))
    sink.add(tagged_image(index=2))
    with pytest.raises(PostgresUnavailableError):
        sink.flush()
    assert sink.pending == 2
    assert factory.made[0].commits == 0


def test_end_to_end_latency_runs_from_submission_not_from_an_old_capture() -> None:
    sink, registry = _sink(Factory())
    now = time.time()
    # a replayed 2017 recording: captured years ago, submitted two seconds ago
    sink.add(tagged_image(index=0, captured_at=1_506_000_000.0, submitted_at=now - 2.0))
    sink.flush()
    labels = {"source_kind": "camera"}
    total = registry.get_sample_value("fashionstream_end_to_end_latency_seconds_sum", labels)
    assert total is not None
    assert 2.0 <= total < 60.0


def test_an_embedding_is_written_as_the_exact_text_of_its_float16_values() -> None:
    # every finite float16, in vectors of the largest size the wire allows
    finite = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = finite[np.isfinite(finite)]
    for start in range(0, finite.size, MAX_EMBEDDING_DIM):
        values = finite[start : start + MAX_EMBEDDING_DIM].astype(np.float64).tolist()
        embedding = WireEmbedding.encode("v1", values)
        assert embedding_literal(embedding) == vector_literal(values)
