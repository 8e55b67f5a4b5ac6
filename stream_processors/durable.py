"""The one durable stage: a Postgres write run in its own thread and retried through outages.

The sink agent (sinking.py) and the tracking agent (tracking.py) both commit batches to Postgres
and may release their offsets only once the batch is committed (acks.py). `DurableWriter`
is what they share:

- every call into the database runs in the stage's executor (psycopg2 blocks; the asyncio loop
  never does);
- an outage (`sinks.errors.PostgresUnavailableError`, or any error `sinks.errors.is_outage`
  calls one) is retried on the same batch with exponential backoff from `RETRY_START_S`,
  capped at `settings.sink_retry_max_s`, for as long as it lasts (tenacity does the schedule);
  every other error is the caller's to handle, at once;
- when the worker begins to stop (`Holds.stop`), the wait is cut short: one last attempt is
  made at once, and if Postgres is still away the write is abandoned (`WriteAbandoned`). The
  batch stays held, never released, and the next worker reads it again: nothing is lost, and
  the stop is not kept waiting by an outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception
from tenacity.wait import wait_exponential

from sinks.errors import PostgresUnavailableError, is_outage
from stream_processors.acks import Holds

log = logging.getLogger(__name__)

RETRY_START_S = 0.5  # the first backoff; doubled after every failed attempt up to the cap

T = TypeVar("T")


class WriteAbandoned(Exception):
    """The worker is stopping and Postgres is still unavailable: nothing of the batch was
    committed and it will not be retried here; its offsets stay uncommitted (read again by the
    next worker). Deliberately not a `PipelineError`: no record is at fault, none is
    dead-lettered."""


def retryable(exc: BaseException) -> bool:
    """An outage: the same write may succeed later (sinks/errors.py)."""
    return isinstance(exc, PostgresUnavailableError) or is_outage(exc)


class DurableWriter:
    """Runs one stage's Postgres calls in its thread and commits through outages."""

    def __init__(
        self,
        *,
        executor: Executor,
        holds: Holds,
        retry_max_s: float,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._executor = executor
        self._holds = holds
        self._retry_max_s = retry_max_s
        self._sleep = sleep

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the stage's thread, once (no retry)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def commit(self, flush: Callable[[], T], *, holding: str) -> T:
        """`flush()` in the stage's thread until it stops failing with an outage; returns its
        result. Any other error is raised at once. Raises `WriteAbandoned` when an attempt made
        after the worker began to stop still meets an outage. `holding` says what waits on the
        commit, for the logs ("3 records")."""
        last_try = False  # the attempt running was started after the stop began

        async def attempt() -> T:
            nonlocal last_try
            last_try = self._holds.stopping
            return await self.call(flush)

        def stop_after_last_try(_state: RetryCallState) -> bool:
            return last_try

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "Postgres unavailable (attempt %d, %s held, retry in %.1fs): %s",
                state.attempt_number,
                holding,
                wait_s,
                error,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            wait=wait_exponential(multiplier=RETRY_START_S, max=self._retry_max_s),
            stop=stop_after_last_try,
            sleep=self._pause,
            before_sleep=log_retry,
        )
        try:
            result: T = await retrying(attempt)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            log.warning("stopping with Postgres unavailable: %s not committed (%s)", holding, cause)
            raise WriteAbandoned(f"{holding} not committed: {cause}") from cause
        attempts = retrying.statistics.get("attempt_number", 1)
        if attempts > 1:
            log.info("Postgres is back: %s committed after %d attempts", holding, attempts)
        return result

    async def _pause(self, seconds: float) -> None:
        """The backoff, cut short when the worker begins to stop."""
        if self._holds.stopping:
            return
        nap = asyncio.ensure_future(self._sleep(seconds))
        stop = asyncio.ensure_future(self._holds.wait_stopping())
        try:
            await asyncio.wait({nap, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            stop.cancel()
