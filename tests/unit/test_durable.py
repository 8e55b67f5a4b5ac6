"""The durable stage (stream_processors/durable.py): outages retried with a capped exponential
backoff in the stage's thread, other errors raised at once, a stop cutting the wait short."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from sinks.errors import PostgresUnavailableError, SchemaNotReadyError
from stream_processors.acks import Holds
from stream_processors.durable import RETRY_START_S, DurableWriter, WriteAbandoned, retryable
from tests.support.agents import until


class Flaky:
    """Fails with `error` `failures` times, then returns the number of calls."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.threads: list[str] = []

    def __call__(self) -> int:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        if self.calls <= self.failures:
            raise self.error
        return self.calls


def writer(holds: Holds, waits: list[float], retry_max_s: float = 4.0) -> DurableWriter:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return DurableWriter(
        executor=ThreadPoolExecutor(1, thread_name_prefix="fs-test"),
        holds=holds,
        retry_max_s=retry_max_s,
        sleep=sleep,
    )


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (PostgresUnavailableError("down"), True),
        (SchemaNotReadyError("not migrated"), True),
        (psycopg2.OperationalError("connection lost"), True),
        (psycopg2.DataError("bad value"), False),
        (KeyError("a bug"), False),
    ],
)
def test_what_is_retried(error: Exception, outage: bool) -> None:
    assert retryable(error) is outage


def test_outages_are_retried_in_the_thread_with_a_capped_exponential_backoff() -> None:
    waits: list[float] = []
    flush = Flaky(6, PostgresUnavailableError("down"))
    result = asyncio.run(writer(Holds(lambda: None), waits).commit(flush, holding="3 records"))
    assert result == 7
    assert waits == [RETRY_START_S, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(name.startswith("fs-test") for name in flush.threads)


def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    waits: list[float] = []
    flush = Flaky(1, KeyError("a bug"))
    with pytest.raises(KeyError):
        asyncio.run(writer(Holds(lambda: None), waits).commit(flush, holding="1 record"))
    assert flush.calls == 1
    assert waits == []


def test_a_stop_cuts_the_backoff_short_and_abandons_after_one_last_attempt() -> None:
    holds = Holds(lambda: None)
    flush = Flaky(10_000, PostgresUnavailableError("down"))
    durable = DurableWriter(
        executor=ThreadPoolExecutor(1),
        holds=holds,
        retry_max_s=3600.0,  # without the stop, the second wait alone would outlast the test
    )

    async def go() -> float:
        task = asyncio.ensure_future(durable.commit(flush, holding="2 records"))
        await until(lambda: flush.calls >= 2, "two failed attempts")
        loop = asyncio.get_running_loop()
        started = loop.time()
        holds.stop()
        with pytest.raises(WriteAbandoned):
            await task
        return loop.time() - started

    assert asyncio.run(go()) < 1.0
    assert flush.calls == 3  # two before the stop, one last attempt after it


@pytest.mark.parametrize(("failures", "commits"), [(0, True), (1, False)])
def test_once_stopping_a_write_gets_one_attempt(failures: int, commits: bool) -> None:
    holds = Holds(lambda: None)
    holds.stop()
    waits: list[float] = []
    flush = Flaky(failures, PostgresUnavailableError("down"))
    if commits:
        assert asyncio.run(writer(holds, waits).commit(flush, holding="1 record")) == 1
    else:
        with pytest.raises(WriteAbandoned):
            asyncio.run(writer(holds, waits).commit(flush, holding="1 record"))
    assert flush.calls == 1
    assert waits == []
