"""TaggerProcess: a tagger in a child process answers as it would in this one, its errors come
back as themselves, and a child that dies costs one call, not the worker."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import numpy as np
import pytest

from stream_processors.tagger_process import TaggerProcess, TaggerProcessDied
from tests.support.fake_tagger import FakeTagger


def _black(image: np.ndarray) -> bool:
    return bool(image.max() == 0)


def _die_on_black(image: np.ndarray) -> bool:
    if image.max() == 0:
        os._exit(3)  # what a crash in native code looks like from outside
    return False


def _broken_build() -> FakeTagger:
    raise FileNotFoundError("weights/manifest.json")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(1, 255, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture
def process() -> Iterator[TaggerProcess]:
    tagger = TaggerProcess(functools.partial(FakeTagger, model_version="fake-in-child"))
    yield tagger
    tagger.close()


def test_the_child_tags_as_the_same_tagger_does_here(process: TaggerProcess) -> None:
    images = _images()
    assert process.model_version == "fake-in-child"
    assert process.pid is not None
    assert process.pid != os.getpid()
    here = FakeTagger(model_version="fake-in-child").tag(images)
    assert process.tag(images, catalogue=[False] * 3, sources=[None] * 3) == here


def test_an_error_in_the_child_comes_back_as_itself_and_the_child_goes_on() -> None:
    process = TaggerProcess(functools.partial(FakeTagger, fail_when=_black))
    try:
        pid = process.pid
        with pytest.raises(RuntimeError, match="told to fail"):
            process.tag([np.zeros((8, 8, 3), np.uint8)])
        assert len(process.tag(_images())) == 3
        assert process.pid == pid
    finally:
        process.close()


def test_a_child_that_dies_fails_its_call_and_the_next_call_starts_another() -> None:
    process = TaggerProcess(functools.partial(FakeTagger, fail_when=_die_on_black))
    try:
        first = process.pid
        with pytest.raises(TaggerProcessDied, match="exit code 3"):
            process.tag([*_images(), np.zeros((8, 8, 3), np.uint8)])
        assert len(process.tag(_images())) == 3
        assert process.pid not in (None, first)
    finally:
        process.close()


def test_a_tagger_that_cannot_be_built_fails_the_constructor_with_its_error() -> None:
    with pytest.raises(FileNotFoundError, match="manifest"):
        TaggerProcess(_broken_build)


def test_close_ends_the_child_and_later_calls_fail(process: TaggerProcess) -> None:
    pid = process.pid
    assert pid is not None
    process.close()
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process
    with pytest.raises(TaggerProcessDied, match="closed"):
        process.tag(_images())
