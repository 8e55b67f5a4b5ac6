"""lower_all_but: the worker's own threads run below its inference thread (Linux: per thread)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from stream_processors.app import lower_all_but

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's"
)


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)  # 0: the calling thread, on Linux


def _in_a_thread_of_its_own(body: Callable[[], T]) -> T:
    """Run `body` in a fresh thread (a lowered priority cannot be raised again without
    privileges: never lower pytest's own thread); its result or its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = body()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def test_the_inference_thread_keeps_its_priority_and_later_threads_take_the_lower_one() -> None:
    def body() -> tuple[int, int, int, int]:
        before = _nice()
        inference = ThreadPoolExecutor(1)
        try:
            lower_all_but(inference, 3)
            later = ThreadPoolExecutor(1)  # e.g. the sink's thread, started afterwards
            try:
                return (
                    before,
                    _nice(),
                    inference.submit(_nice).result(),
                    later.submit(_nice).result(),
                )
            finally:
                later.shutdown()
        finally:
            inference.shutdown()

    before, caller, inference, later = _in_a_thread_of_its_own(body)
    if before > 16:
        pytest.skip(f"the test runs at nice {before} already")
    assert (caller, inference, later) == (before + 3, before, before + 3)


def test_nice_zero_changes_nothing() -> None:
    def body() -> tuple[int, int]:
        before = _nice()
        executor = ThreadPoolExecutor(1)
        try:
            lower_all_but(executor, 0)
            return before, _nice()
        finally:
            executor.shutdown()

    before, after = _in_a_thread_of_its_own(body)
    assert after == before
